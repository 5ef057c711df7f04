//! Glue between the wire and the deploy guard ([`super::guard`]): a detector poison
//! decision asks the guard before it is diverted, commits feed it, and a tripped group's
//! partitions skip the detector's gating (records already quarantined stay hidden). Trips
//! and re-arms are logged once, counted by group, and listed by `GET /quarantine/guards`.

use std::time::Instant;

use serde::Serialize;

use super::guard::{Diversion, GroupStatus, Guard, Rearm, Rearmed, Trip, Verdict};
use super::store::now_ms;
use super::ConsumerWatch;
use crate::detect::{PartitionKey, Poison};
use crate::ops::metrics::GroupLabel;

/// One group's guard as `GET /quarantine/guards` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GuardView {
    /// The guard's state.
    #[serde(flatten)]
    pub status: GroupStatus,
    /// Commands that replay what was diverted before the current trip (dry run; drop
    /// `--dry-run` once it shows the right records).
    pub replay: Vec<String>,
}

impl ConsumerWatch {
    pub(crate) fn guard(&self) -> std::sync::MutexGuard<'_, Guard> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the group's guard is tripped: its partitions go out as the broker has them.
    pub(crate) fn guard_paused(&self, group: &str) -> bool {
        self.guard().is_tripped(group)
    }

    /// Asks the guard before a detector poison record is diverted; false when the
    /// diversion is refused (the record stays visible, the detector is told so).
    pub(crate) fn guard_allows(&self, key: &PartitionKey, poison: &Poison) -> bool {
        let cfg = *self.policy.guard(&key.topic, &key.group);
        let d = Diversion {
            topic: key.topic.clone(),
            partition: key.partition,
            offset: poison.offset,
            reason: poison.reason.as_str().to_string(),
            at_ms: now_ms(),
        };
        let verdict = self.guard().poison(&cfg, &key.group, d, Instant::now());
        let Verdict::Refuse { tripped } = verdict else {
            return true;
        };
        let label = GroupLabel {
            group: key.group.clone(),
        };
        self.metrics.guard_refused.get_or_create(&label).inc();
        self.detector().divert_failed(key, poison.offset);
        if let Some(trip) = tripped {
            self.metrics.guard_tripped.get_or_create(&label).set(1);
            self.metrics.guard_trips.get_or_create(&label).inc();
            let diverted: Vec<String> = trip
                .diverted_before
                .iter()
                .map(|d| format!("{}-{}@{}", d.topic, d.partition, d.offset))
                .collect();
            tracing::warn!(
                group = %key.group, topic = %key.topic, partition = key.partition, offset = poison.offset,
                signal = trip.signal.name(), why = %trip.signal, diverted_before = %diverted.join(","),
                replay = %self.replay_commands(&trip).join(" ; "),
                "deploy guard tripped: the consumer is broken, not the data; quarantine has paused diverting for this group and delivers every record as the broker has it. Roll back the deploy; the guard re-arms when the group commits past the refused record"
            );
        }
        false
    }

    /// A committed offset of a watched partition (OffsetCommit, or an OffsetFetch answer).
    pub(crate) fn guard_commit(&self, key: &PartitionKey, offset: i64, now: Instant) {
        if offset < 0 {
            return;
        }
        let cfg = *self.policy.guard(&key.topic, &key.group);
        let store = &self.store;
        let hidden_between = |from: i64, to: i64| {
            let hidden = store.hidden(&key.group, &key.topic, key.partition);
            let lo = hidden.partition_point(|o| *o < from);
            let hi = hidden.partition_point(|o| *o < to);
            (hi - lo) as u64
        };
        let rearmed = self.guard().commit(&cfg, key, offset, now, hidden_between);
        if let Some(r) = rearmed {
            self.rearmed(&r);
        }
    }

    /// Counts the poison diversions other sidecars of watched groups made (read from the
    /// state topic since the last tick) in this proxy's guards.
    pub(crate) fn guard_shared(&self) {
        let now = Instant::now();
        let wall = now_ms();
        for q in self.store.take_quarantines() {
            // This proxy's own decisions were counted when they were made; manual
            // quarantines and check failures are not the detector's.
            if q.instance == self.diverter.instance()
                || matches!(q.reason.as_str(), "manual" | "check")
            {
                continue;
            }
            let Some(key) = self.key(&q.group, &q.topic, q.partition) else {
                continue;
            };
            let cfg = *self.policy.guard(&key.topic, &key.group);
            if wall.saturating_sub(q.at_ms) > cfg.window.as_millis() as i64 {
                continue;
            }
            let d = Diversion {
                topic: q.topic,
                partition: q.partition,
                offset: q.offset,
                reason: q.reason,
                at_ms: q.at_ms,
            };
            self.guard().shared(&cfg, &key.group, d, now);
        }
    }

    /// Re-arms a group's guard by hand (admin API); false when it was not tripped.
    pub fn guard_rearm(&self, group: &str) -> bool {
        let rearmed = self.guard().rearm(group);
        match rearmed {
            Some(r) => {
                self.rearmed(&r);
                true
            }
            None => false,
        }
    }

    /// Every group's guard, with the replay commands of a current trip.
    pub fn guard_status(&self) -> Vec<GuardView> {
        let status = self.guard().status();
        status
            .into_iter()
            .map(|status| GuardView {
                replay: status
                    .trip
                    .as_ref()
                    .map(|t| self.replay_commands(t))
                    .unwrap_or_default(),
                status,
            })
            .collect()
    }

    fn rearmed(&self, r: &Rearmed) {
        self.metrics
            .guard_tripped
            .get_or_create(&GroupLabel {
                group: r.group.clone(),
            })
            .set(0);
        let how = match r.why {
            Rearm::Progress => "the group committed past the records it was failing on",
            Rearm::Manual => "re-armed by an operator",
        };
        tracing::warn!(
            group = %r.group, why = how, paused_ms = now_ms().saturating_sub(r.trip.at_ms),
            diverted_before = r.trip.diverted_before.len(),
            replay = %self.replay_commands(&r.trip).join(" ; "),
            "deploy guard re-armed: quarantine diverts poison records of this group again"
        );
    }

    /// One `quarantine dlq replay` per DLQ topic that holds diversions of the trip's
    /// failing streak: selected by group and diversion time, each record at most once.
    fn replay_commands(&self, trip: &Trip) -> Vec<String> {
        let (Some(first), Some(last)) = (
            trip.diverted_before.iter().map(|d| d.at_ms).min(),
            trip.diverted_before.iter().map(|d| d.at_ms).max(),
        ) else {
            return Vec::new();
        };
        let mut dlqs: Vec<String> = trip
            .diverted_before
            .iter()
            .map(|d| self.policy.dlq_topic(&d.topic, &trip.group))
            .collect();
        dlqs.sort();
        dlqs.dedup();
        dlqs.into_iter()
            .map(|dlq| {
                format!(
                    "quarantine dlq replay {dlq} --group {} --diverted-after {first} --diverted-before {} --max-replays 1 --dry-run",
                    trip.group,
                    // The header's time is taken just after the guard's, within a second.
                    last + 1000
                )
            })
            .collect()
    }
}
