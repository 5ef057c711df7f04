//! The fetch path. For each watched partition of a Fetch response, in order:
//! 1. hide the records quarantined for the consumer's group;
//! 2. run the topic's transform/check pipeline: records that fail a check are written to
//!    the dead-letter topic (awaited) and removed, filtered records are removed, the rest
//!    may be rewritten; a failed dead-letter write cuts the response before that record so
//!    it is neither lost nor seen;
//! 3. tell the detector what the consumer is about to see and apply its decision (pass,
//!    trim to a window, withhold), starting a dead-letter write when it names a poison
//!    record.
//!
//! Batches nobody touches are forwarded as the broker's bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::FetchResponse;

use super::divert::DivertRequest;
use super::{ConnInfo, ConsumerWatch};
use crate::detect::{Action, ConnId, DeliveryDecision, PartitionKey, Report, Visible};
use crate::ops::metrics::{DivertLabel, HoldLabel, Metrics, TopicGroupLabel};
use crate::protocol::consumer_requests::{FetchPosition, TopicRef};
use crate::protocol::fetch_scan::{BatchSpan, ScannedPartition};
use crate::protocol::record::Record;
use crate::protocol::record_batch::{self, Verdict};
use crate::transform::{Outcome, Pipeline, RecordContext};

/// A Fetch request of watched partitions, waiting for its response.
#[derive(Debug)]
pub struct FetchWatch {
    client_id: String,
    max_wait_ms: i32,
    positions: Vec<FetchPosition>,
}

impl FetchWatch {
    /// Notes a fetch; `positions` name topics by name.
    pub fn new(client_id: String, max_wait_ms: i32, positions: Vec<FetchPosition>) -> Self {
        FetchWatch {
            client_id,
            max_wait_ms,
            positions,
        }
    }

    fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .iter()
            .find(|p| {
                p.partition == partition && matches!(&p.topic, TopicRef::Name(n) if n == topic)
            })
            .map(|p| p.offset)
    }
}

/// One partition of a response, as the fetch path works on it.
struct PartitionWork<'a> {
    topic: &'a str,
    partition: i32,
    group: String,
    position: i64,
    /// Offsets quarantined for this group's partition, sorted; read once per response.
    hidden: Vec<i64>,
}

impl ConsumerWatch {
    /// Sees (and may change) a fetch response; returns whether it changed.
    pub(super) async fn fetch_response(
        &self,
        conn: &ConnInfo,
        fetch: &mut FetchWatch,
        resp: &mut FetchResponse,
        version: i16,
    ) -> bool {
        // Hidden offsets must be known before any watched record goes out after a restart.
        self.store.wait_loaded().await;
        let mut changed = false;
        let mut withheld = false;
        let mut any_records = false;
        for topic in &mut resp.responses {
            let name = if version >= 13 {
                match self.topics.name_of(topic.topic_id.as_bytes()) {
                    Some(n) => n,
                    None => continue,
                }
            } else {
                topic.topic.0.to_string()
            };
            for part in &mut topic.partitions {
                let original = part.records.clone().unwrap_or_default();
                let Some(position) = fetch.position(&name, part.partition_index) else {
                    any_records |= !original.is_empty();
                    continue;
                };
                let group = self
                    .groups()
                    .group_for_fetch(&fetch.client_id, &name, part.partition_index)
                    .map(str::to_owned);
                let mut work = PartitionWork {
                    topic: &name,
                    partition: part.partition_index,
                    group: group.clone().unwrap_or_default(),
                    position,
                    hidden: self.store.hidden(
                        group.as_deref().unwrap_or_default(),
                        &name,
                        part.partition_index,
                    ),
                };
                let key = group
                    .as_deref()
                    .and_then(|g| self.key(g, &name, part.partition_index));
                let pipeline = self.pipelines.for_record(&name, group.as_deref());
                let mut out = original.clone();
                if part.error_code == 0 && !out.is_empty() {
                    if group.is_some() {
                        out = self.hide(&work, out);
                    }
                    if let Some(pl) = pipeline {
                        out = self.run_pipeline(pl, &mut work, out).await;
                    }
                }
                // A tripped deploy guard: the group gets its records as the broker has them.
                if let Some(key) = key.as_ref().filter(|k| !self.guard_paused(&k.group)) {
                    let decision = self.detect(conn, key, &work, &out);
                    if decision.action == Action::Withhold {
                        withheld = true;
                    }
                    if let Some(hold) = decision.hold {
                        self.metrics
                            .fetch_holds
                            .get_or_create(&HoldLabel {
                                group: key.group.clone(),
                                reason: hold.as_str().to_string(),
                            })
                            .inc();
                    }
                    out = self.apply_decision(&work, key, &decision, out, pipeline);
                }
                any_records |= !out.is_empty();
                // Every step returns the same buffer when it changes nothing: comparing the
                // pointers avoids a byte-by-byte compare of every fetched record set.
                let same = (out.is_empty() && original.is_empty())
                    || (out.as_ptr() == original.as_ptr() && out.len() == original.len());
                if !same {
                    part.records = Some(out);
                    changed = true;
                }
            }
        }
        // A crash judged during this response's detection names its poison here.
        self.divert_decided();
        if withheld && !any_records {
            // Like a broker with nothing to return: hold the answer for the fetch's wait
            // time, so a gated consumer does not spin.
            let wait = Duration::from_millis(fetch.max_wait_ms.clamp(0, 1000) as u64);
            tokio::time::sleep(wait).await;
        }
        changed
    }

    /// Whether the response to this fetch can only pass through unchanged: the state topic
    /// is read, and for every partition of the fetch no pipeline applies, nothing is
    /// hidden from the fetch position on, and the detector has nothing to judge (see
    /// [`crate::detect::Detector::may_stream`]). Decided when the response starts to
    /// arrive; a decision taken while it streams applies from the next fetch on.
    pub(super) fn fetch_may_stream(&self, fetch: &FetchWatch) -> bool {
        if !self.store.is_loaded() {
            return false;
        }
        for p in &fetch.positions {
            let TopicRef::Name(topic) = &p.topic else {
                return false;
            };
            if self.pipelines.iter().any(|pl| pl.matches_topic(topic)) {
                return false;
            }
            let group = self
                .groups()
                .group_for_fetch(&fetch.client_id, topic, p.partition)
                .map(str::to_owned);
            let Some(group) = group else {
                continue;
            };
            if self.store.hides_from(&group, topic, p.partition, p.offset) {
                return false;
            }
            if let Some(key) = self.key(&group, topic, p.partition) {
                if !self.guard_paused(&group) && !self.detector().may_stream(&key, p.offset) {
                    return false;
                }
            }
        }
        true
    }

    /// A fetch response that was streamed: the deliveries it made are reported to the
    /// detector as a held response's are.
    pub(super) fn fetch_streamed(
        &self,
        conn: &ConnInfo,
        fetch: &FetchWatch,
        partitions: &[ScannedPartition],
    ) {
        for part in partitions {
            let name = match &part.topic {
                TopicRef::Name(n) => Some(n.clone()),
                TopicRef::Id(id) => self.topics.name_of(id),
            };
            let Some(name) = name else { continue };
            let Some(position) = fetch.position(&name, part.partition) else {
                continue;
            };
            let group = self
                .groups()
                .group_for_fetch(&fetch.client_id, &name, part.partition)
                .map(str::to_owned);
            let Some(group) = group else { continue };
            let Some(key) = self.key(&group, &name, part.partition) else {
                continue;
            };
            if self.guard_paused(&group) || part.error_code != 0 {
                continue;
            }
            let visible = streamed_range(&part.batches, position);
            let cfg = *self.policy.detection(&name, &group);
            let decision = self.detector().delivery(
                &cfg,
                &key,
                position,
                visible,
                ConnId(conn.id),
                Instant::now(),
            );
            if decision.action != Action::Pass || decision.hold.is_some() {
                // Not expected after `fetch_may_stream`; the records already went out.
                self.metrics.error("streamed_fetch_decision");
                tracing::debug!(group = %key.group, topic = %key.topic, partition = key.partition,
                    "a streamed fetch response would have been changed; applying from the next fetch");
            }
            if let Some(poison) = decision
                .poison
                .as_ref()
                .filter(|p| self.guard_allows(&key, p))
            {
                let mask = self
                    .pipelines
                    .for_record(&key.topic, Some(&key.group))
                    .and_then(|p| p.dlq_mask().cloned());
                self.diverter
                    .divert(&key, DivertRequest::poison(poison), None, mask);
            }
        }
        self.divert_decided();
    }

    /// Removes the records quarantined for this group. On a batch that cannot be
    /// rewritten, nothing is passed on (a hidden record must never reappear).
    fn hide(&self, w: &PartitionWork<'_>, records: Bytes) -> Bytes {
        let hidden = &w.hidden;
        if hidden.is_empty() {
            return records;
        }
        match record_batch::hide_offsets(&records, hidden) {
            Ok(Some(b)) => {
                self.metrics.batches_rewritten.inc();
                b
            }
            Ok(None) => records,
            Err(e) => {
                self.metrics.error("record_batch");
                tracing::warn!(error = %e, topic = w.topic, partition = w.partition, "cannot hide quarantined records; withholding the partition's records");
                Bytes::new()
            }
        }
    }

    /// Runs the topic's pipeline over the records at or after the consumer's position.
    async fn run_pipeline(
        &self,
        pl: &Pipeline,
        w: &mut PartitionWork<'_>,
        records: Bytes,
    ) -> Bytes {
        if pl.needs_prepare() {
            let decoded = decode_from(&records, w.position);
            pl.prepare(&decoded).await;
        }
        let ctx = RecordContext {
            topic: w.topic,
            partition: w.partition,
            group: (!w.group.is_empty()).then_some(w.group.as_str()),
        };
        let mut failed: Vec<(Record, crate::transform::Failure)> = Vec::new();
        let result = record_batch::rewrite_batches(
            &records,
            |h| h.last_offset() >= w.position,
            |r| {
                if r.offset < w.position {
                    return Verdict::Keep;
                }
                match pl.apply(&ctx, r) {
                    Outcome::Pass { unverified, .. } => {
                        if unverified.is_some() {
                            self.metrics
                                .records_unverified
                                .get_or_create(&TopicGroupLabel {
                                    topic: w.topic.to_string(),
                                    group: w.group.clone(),
                                })
                                .inc();
                        }
                        Verdict::Keep
                    }
                    Outcome::Filtered => Verdict::Drop,
                    Outcome::Failed(f) => {
                        self.metrics
                            .check_failures
                            .get_or_create(&DivertLabel {
                                topic: w.topic.to_string(),
                                group: w.group.clone(),
                                reason: f.stage.as_str().to_string(),
                            })
                            .inc();
                        if f.tolerated {
                            failed.push((r.clone(), f));
                            Verdict::Drop
                        } else {
                            Verdict::Keep
                        }
                    }
                }
            },
        );
        let mut out = match result {
            Ok(Some(b)) => {
                self.metrics.batches_rewritten.inc();
                b
            }
            Ok(None) => records.clone(),
            Err(e) => {
                // Undecodable data: pass it on as it came; the consumer's own deserializer
                // decides, and poison detection covers it if that fails.
                self.metrics.error("record_batch");
                tracing::warn!(error = %e, topic = w.topic, partition = w.partition, "cannot decode records for the pipeline; passing them on unchanged");
                return records;
            }
        };
        // Write each failed record to the DLQ before it may disappear; stop at the first
        // write that fails and deliver nothing from that record on.
        let key = PartitionKey::new(w.group.clone(), w.topic, w.partition);
        for (record, failure) in failed {
            let offset = record.offset;
            let req = DivertRequest::check(offset, &failure, pl);
            if let Err(e) = self
                .diverter
                .write(&key, &req, Some(record))
                .await
                .map(|_| {
                    // Now quarantined: the detector must not count it as visible.
                    if let Err(at) = w.hidden.binary_search(&offset) {
                        w.hidden.insert(at, offset);
                    }
                })
            {
                self.metrics.dlq_write_failures.inc();
                tracing::error!(group = %w.group, topic = w.topic, partition = w.partition, offset, error = %e,
                    "dead-letter write of a record that failed a check failed; holding the partition at that record");
                out = if offset <= w.position {
                    Bytes::new()
                } else {
                    match record_batch::trim_after(&out, offset - 1) {
                        Ok(Some(b)) => b,
                        Ok(None) => out,
                        Err(_) => Bytes::new(),
                    }
                };
                break;
            }
        }
        out
    }

    fn detect(
        &self,
        conn: &ConnInfo,
        key: &PartitionKey,
        w: &PartitionWork<'_>,
        records: &Bytes,
    ) -> DeliveryDecision {
        let visible = visible_range(records, w.position, &w.hidden);
        let cfg = *self.policy.detection(w.topic, &w.group);
        let decision = self.detector().delivery(
            &cfg,
            key,
            w.position,
            visible,
            ConnId(conn.id),
            Instant::now(),
        );
        decision
    }

    fn apply_decision(
        &self,
        w: &PartitionWork<'_>,
        key: &PartitionKey,
        decision: &DeliveryDecision,
        records: Bytes,
        pipeline: Option<&Pipeline>,
    ) -> Bytes {
        // The deploy guard may refuse it: the application is broken, not the record.
        let poison = decision.poison.as_ref();
        if let Some(poison) = poison.filter(|p| self.guard_allows(key, p)) {
            let req = DivertRequest::poison(poison);
            self.diverter.divert(
                key,
                req,
                find_record(&records, poison.offset),
                pipeline.and_then(|p| p.dlq_mask().cloned()),
            );
        }
        let result = match decision.action {
            Action::Pass => Ok(records.clone()),
            Action::Withhold => Ok(Bytes::new()),
            Action::Trim { last_offset } => record_batch::trim_after(&records, last_offset)
                .map(|b| b.unwrap_or(records.clone())),
        };
        result.unwrap_or_else(|e| {
            self.metrics.error("record_batch");
            tracing::warn!(error = %e, topic = w.topic, partition = w.partition, "cannot trim fetched records; withholding them");
            Bytes::new()
        })
    }
}

/// Decodes the records at or after `position` (for schema lookups before the pipeline).
fn decode_from(records: &Bytes, position: i64) -> Vec<Record> {
    let Ok(view) = record_batch::scan(records) else {
        return Vec::new();
    };
    view.batches()
        .filter(|b| !b.header.is_control() && b.header.last_offset() >= position)
        .filter_map(|b| record_batch::decode_records(b).ok())
        .flatten()
        .filter(|r| r.offset >= position)
        .collect()
}

/// The offsets the consumer will see: the first record at or after its position that is not
/// hidden, and the last offset of the complete batches. `None` when there is none.
fn visible_range(records: &Bytes, position: i64, hidden: &[i64]) -> Option<Visible> {
    let view = record_batch::scan(records).ok()?;
    let mut first: Option<i64> = None;
    let mut last: Option<i64> = None;
    for b in view.batches() {
        if b.header.is_control() || b.header.record_count == 0 {
            continue;
        }
        let end = b.header.last_offset();
        if end < position {
            continue;
        }
        if first.is_none() {
            let mut f = b.header.base_offset.max(position);
            while hidden.binary_search(&f).is_ok() && f < end {
                f += 1;
            }
            first = Some(f);
        }
        last = Some(end);
    }
    Some(Visible {
        first: first?,
        last: last?,
    })
}

/// [`visible_range`] of a streamed response, from its batch offsets (nothing is hidden
/// in a streamed response).
fn streamed_range(batches: &[BatchSpan], position: i64) -> Option<Visible> {
    let mut first = None;
    let mut last = None;
    for b in batches {
        if b.control || b.records == 0 || b.last_offset < position {
            continue;
        }
        first.get_or_insert(b.base_offset.max(position));
        last = Some(b.last_offset);
    }
    Some(Visible {
        first: first?,
        last: last?,
    })
}

/// The record at `offset` in a record set, decoded, if it is there.
fn find_record(records: &Bytes, offset: i64) -> Option<Record> {
    let view = record_batch::scan(records).ok()?;
    let batch = view
        .batches()
        .find(|b| b.header.covers(offset) && !b.header.is_control())?;
    record_batch::decode_records(batch)
        .ok()?
        .into_iter()
        .find(|r| r.offset == offset)
}

/// Logs and counts a detector report.
pub(crate) fn report(metrics: &Metrics, r: &Report) {
    use crate::detect::Event;
    match &r.event {
        Event::StallStarted { .. } => {
            metrics
                .commit_stalls
                .get_or_create(&TopicGroupLabel {
                    topic: r.key.topic.clone(),
                    group: r.key.group.clone(),
                })
                .inc();
            tracing::warn!(group = %r.key.group, topic = %r.key.topic, partition = r.key.partition, event = %r.event, "commit stalled while records were delivered");
        }
        _ => {
            tracing::info!(group = %r.key.group, topic = %r.key.topic, partition = r.key.partition, event = %r.event, "detection");
        }
    }
}
