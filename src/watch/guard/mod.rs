//! The deploy guard: tells "this record is poison" from "this application is broken".
//!
//! A broken deploy fails on every record, and per-record detection alone would then divert
//! record after record. The guard watches what the detector is about to divert and what
//! the group commits, per consumer group, and refuses diversions once failures are no
//! longer isolated:
//!
//! - **consecutive**: more than `max_consecutive` poison diversions with no healthy
//!   progress in between. Healthy progress is a commit that moves past at least one
//!   record that was not hidden, i.e. a record the application really processed. The
//!   streak is counted for the whole group (a deploy broken on every topic) and for each
//!   topic of it (one topic's handler broken while another topic keeps committing);
//! - **ratio**: within `window`, diversions make up more than `max_ratio` of the records
//!   of a topic the group got through (diverted + processed), once the window holds more
//!   than `max_consecutive` diversions (so it never refuses what the first signal allows).
//!
//! Diversions made by the other sidecars of a group (read from the state topic) count in
//! the streaks and the window too ([`Guard::shared`]), so a fleet shares one budget.
//!
//! When a signal fires the guard *trips*: the group gets no more diversions, and the watch
//! layer delivers its partitions as the broker has them (records already quarantined stay
//! hidden). It re-arms by itself when the group commits, with healthy progress, past every
//! record it refused to divert (the rollback worked), or by hand.
//!
//! Pure: no clock is read (every call takes `now` and the wall-clock `at_ms`), no socket.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::detect::PartitionKey;

/// Guard settings for one (topic, group); `watch.guard` and `watch.overrides[].guard`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Off: every poison decision is diverted, however many.
    pub enabled: bool,
    /// Poison diversions allowed with no healthy commit in between. At least 1.
    pub max_consecutive: u32,
    /// Highest share of diverted records among the records a topic's group got through
    /// within `window`, above `max_consecutive` diversions. In (0, 1].
    pub max_ratio: f64,
    /// The time span of the ratio.
    #[serde(with = "duration_text")]
    pub window: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            max_consecutive: 3,
            max_ratio: 0.05,
            window: Duration::from_secs(300),
        }
    }
}

/// A guard setting that cannot work, named by its key under `guard`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid guard setting `{key}`: {reason}")]
pub struct GuardConfigError {
    /// The key under `guard`.
    pub key: &'static str,
    /// What is wrong with its value.
    pub reason: &'static str,
}

impl GuardConfig {
    /// Checks the values that would make the guard misbehave.
    pub fn validate(&self) -> Result<(), GuardConfigError> {
        let bad = |key, reason| Err(GuardConfigError { key, reason });
        if self.max_consecutive == 0 {
            return bad("max_consecutive", "must be at least 1");
        }
        if !(self.max_ratio > 0.0 && self.max_ratio <= 1.0) {
            return bad("max_ratio", "must be above 0 and at most 1");
        }
        if self.window.is_zero() {
            return bad("window", "must be longer than 0");
        }
        Ok(())
    }
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::detect::{format_duration, parse_duration};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Ms(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Text::deserialize(d)? {
            Text::Ms(ms) => Ok(Duration::from_millis(ms)),
            Text::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A poison record the detector named, about to be diverted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diversion {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The detector's reason (`crash-loop`, `seek-back`, ...).
    pub reason: String,
    /// When it was decided (unix ms).
    pub at_ms: i64,
}

/// Which signal tripped the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// Too many diversions with no healthy progress in between.
    Consecutive,
    /// Diversions above the ratio of the records processed within the window.
    Ratio,
}

impl Signal {
    /// The short name, as in the admin API (`consecutive`, `ratio`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Consecutive => "consecutive",
            Signal::Ratio => "ratio",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Consecutive => "consecutive diversions without a healthy commit",
            Signal::Ratio => "diversions above the ratio of processed records",
        })
    }
}

/// The guard's answer to a poison decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Divert it.
    Allow,
    /// Do not divert; deliver the record as the broker has it. `tripped` is set when this
    /// decision tripped the guard.
    Refuse {
        /// The trip this refusal started, if it started one.
        tripped: Option<Trip>,
    },
}

/// A tripped guard: why, when, and what was diverted before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    /// Consumer group.
    pub group: String,
    /// The signal.
    pub signal: Signal,
    /// When (unix ms).
    pub at_ms: i64,
    /// The records refused since, by (topic, partition): the first refused offset. The
    /// guard re-arms once the group commits past all of them.
    #[serde(serialize_with = "refused_list")]
    pub refused: BTreeMap<(String, i32), i64>,
    /// Diversions of the failing streak before the trip: most likely healthy records the
    /// broken application could not process. Replay them after the rollback.
    pub diverted_before: Vec<Diversion>,
    /// Diversions in the window, for the ratio signal.
    pub window_diversions: u64,
    /// Records processed in the window.
    pub window_processed: u64,
}

fn refused_list<S: serde::Serializer>(
    m: &BTreeMap<(String, i32), i64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.len()))?;
    for ((topic, partition), offset) in m {
        seq.serialize_element(&serde_json::json!({
            "topic": topic, "partition": partition, "offset": offset
        }))?;
    }
    seq.end()
}

/// Why a guard re-armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rearm {
    /// The group committed past every refused record.
    Progress,
    /// An operator re-armed it.
    Manual,
}

/// A re-armed guard, for the log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rearmed {
    /// Consumer group.
    pub group: String,
    /// Why.
    pub why: Rearm,
    /// The trip that ended.
    pub trip: Trip,
}

/// Most diversions remembered per streak (only other sidecars' can pile up past the limit).
const MAX_STREAK: usize = 1000;

/// Diversions and processed records of one second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    at: Instant,
    diverted: u64,
    processed: u64,
}

#[derive(Debug, Default)]
struct TopicState {
    /// Diversions since the last healthy commit on this topic.
    streak: Vec<Diversion>,
    /// Per-second counts within the window.
    buckets: VecDeque<Bucket>,
}

impl TopicState {
    fn add(&mut self, now: Instant, window: Duration, diverted: u64, processed: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| now.saturating_duration_since(b.at) >= window)
        {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some(b) if now.saturating_duration_since(b.at) < Duration::from_secs(1) => {
                b.diverted += diverted;
                b.processed += processed;
            }
            _ => self.buckets.push_back(Bucket {
                at: now,
                diverted,
                processed,
            }),
        }
    }

    /// (diverted, processed) within `window` before `now`.
    fn in_window(&self, now: Instant, window: Duration) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|b| now.saturating_duration_since(b.at) < window)
            .fold((0, 0), |(d, p), b| (d + b.diverted, p + b.processed))
    }
}

#[derive(Debug, Default)]
struct GroupState {
    /// Diversions since the last healthy commit anywhere in the group.
    streak: Vec<Diversion>,
    topics: HashMap<String, TopicState>,
    /// Last committed offset seen per (topic, partition).
    committed: HashMap<(String, i32), i64>,
    trip: Option<Trip>,
    trips: u64,
    refused: u64,
}

/// One group's guard, for status pages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStatus {
    /// Consumer group.
    pub group: String,
    /// Whether diversions are paused.
    pub tripped: bool,
    /// The current trip.
    pub trip: Option<Trip>,
    /// Diversions since the group's last healthy commit.
    pub streak: usize,
    /// Trips since start.
    pub trips: u64,
    /// Diversions refused since start.
    pub refused: u64,
}

/// The guards of every group this proxy has seen commit or divert.
#[derive(Debug, Default)]
pub struct Guard {
    groups: HashMap<String, GroupState>,
}

impl Guard {
    /// Whether the group's guard is tripped (its partitions go out as the broker has them).
    pub fn is_tripped(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| g.trip.is_some())
    }

    /// The detector names a poison record of `group`: may it be diverted?
    pub fn poison(
        &mut self,
        cfg: &GuardConfig,
        group: &str,
        d: Diversion,
        now: Instant,
    ) -> Verdict {
        if !cfg.enabled {
            return Verdict::Allow;
        }
        let g = self.groups.entry(group.to_string()).or_default();
        if let Some(trip) = &mut g.trip {
            g.refused += 1;
            trip.refused
                .entry((d.topic.clone(), d.partition))
                .and_modify(|o| *o = (*o).min(d.offset))
                .or_insert(d.offset);
            return Verdict::Refuse { tripped: None };
        }
        let same = |s: &Diversion| {
            s.topic == d.topic && s.partition == d.partition && s.offset == d.offset
        };
        if g.streak.iter().any(same) {
            // The same decision again (a retried dead-letter write): already counted.
            return Verdict::Allow;
        }
        let max = cfg.max_consecutive as usize;
        let t = g.topics.entry(d.topic.clone()).or_default();
        if t.streak.iter().any(same) {
            return Verdict::Allow;
        }
        let (diverted, processed) = t.in_window(now, cfg.window);
        let signal = if g.streak.len() >= max || t.streak.len() >= max {
            Some(Signal::Consecutive)
        } else {
            let d1 = diverted + 1;
            (d1 > max as u64 && d1 as f64 > cfg.max_ratio * (d1 + processed) as f64)
                .then_some(Signal::Ratio)
        };
        let Some(signal) = signal else {
            t.streak.push(d.clone());
            t.add(now, cfg.window, 1, 0);
            g.streak.push(d);
            return Verdict::Allow;
        };
        let mut before: Vec<Diversion> = g.streak.clone();
        for s in &t.streak {
            if !before.contains(s) {
                before.push(s.clone());
            }
        }
        before.sort_by_key(|s| s.at_ms);
        let trip = Trip {
            group: group.to_string(),
            signal,
            at_ms: d.at_ms,
            refused: BTreeMap::from([((d.topic.clone(), d.partition), d.offset)]),
            diverted_before: before,
            window_diversions: diverted,
            window_processed: processed,
        };
        g.trips += 1;
        g.refused += 1;
        g.trip = Some(trip.clone());
        Verdict::Refuse {
            tripped: Some(trip),
        }
    }

    /// A poison record of `group` diverted by another sidecar of the group (read from the
    /// state topic): counted in the streaks and the window as this proxy's own would be, so
    /// a fleet of sidecars shares one budget. It never trips the guard by itself; the next
    /// decision of this proxy does.
    pub fn shared(&mut self, cfg: &GuardConfig, group: &str, d: Diversion, now: Instant) {
        if !cfg.enabled {
            return;
        }
        let g = self.groups.entry(group.to_string()).or_default();
        if g.trip.is_some() {
            return;
        }
        let same = |s: &Diversion| {
            s.topic == d.topic && s.partition == d.partition && s.offset == d.offset
        };
        let t = g.topics.entry(d.topic.clone()).or_default();
        if g.streak.iter().any(same) || t.streak.iter().any(same) {
            return;
        }
        t.add(now, cfg.window, 1, 0);
        // Other sidecars may divert without a guard of their own: keep the lists bounded.
        if t.streak.len() < MAX_STREAK {
            t.streak.push(d.clone());
        }
        if g.streak.len() < MAX_STREAK {
            g.streak.push(d);
        }
    }

    /// A committed offset of the group (an OffsetCommit, or an OffsetFetch answer).
    /// `hidden_between(from, to)` counts the offsets in `[from, to)` hidden from the group
    /// (they were diverted, not processed). Returns the re-arm it caused, if any.
    pub fn commit(
        &mut self,
        cfg: &GuardConfig,
        key: &PartitionKey,
        offset: i64,
        now: Instant,
        hidden_between: impl FnOnce(i64, i64) -> u64,
    ) -> Option<Rearmed> {
        let (group, topic, partition) = (key.group.as_str(), key.topic.as_str(), key.partition);
        let g = self.groups.entry(group.to_string()).or_default();
        let prev = g.committed.insert((topic.to_string(), partition), offset)?;
        if offset <= prev {
            return None;
        }
        let advanced = (offset - prev) as u64;
        // Only a failing streak or a trip needs the exact count; elsewhere the few hidden
        // records a range may hold barely move the ratio.
        let exact = g.trip.is_some()
            || !g.streak.is_empty()
            || g.topics.values().any(|t| !t.streak.is_empty());
        let processed = if exact {
            advanced.saturating_sub(hidden_between(prev, offset))
        } else {
            advanced
        };
        if processed == 0 {
            return None;
        }
        g.streak.clear();
        let t = g.topics.entry(topic.to_string()).or_default();
        t.streak.clear();
        t.add(now, cfg.window, 0, processed);
        let trip = g.trip.as_mut()?;
        trip.refused
            .retain(|(t, p), refused| !(t == topic && *p == partition && offset > *refused));
        if !trip.refused.is_empty() {
            return None;
        }
        // The failures before the trip were the broken deploy's: the fixed application
        // starts with a clean slate.
        g.topics.clear();
        let trip = g.trip.take()?;
        Some(Rearmed {
            group: group.to_string(),
            why: Rearm::Progress,
            trip,
        })
    }

    /// An operator re-arms the group: the trip ends and the streaks start afresh.
    pub fn rearm(&mut self, group: &str) -> Option<Rearmed> {
        let g = self.groups.get_mut(group)?;
        g.streak.clear();
        g.topics.clear();
        let trip = g.trip.take()?;
        Some(Rearmed {
            group: group.to_string(),
            why: Rearm::Manual,
            trip,
        })
    }

    /// Every group's guard, sorted by group.
    pub fn status(&self) -> Vec<GroupStatus> {
        let mut v: Vec<GroupStatus> = self
            .groups
            .iter()
            .map(|(group, g)| GroupStatus {
                group: group.clone(),
                tripped: g.trip.is_some(),
                trip: g.trip.clone(),
                streak: g.streak.len(),
                trips: g.trips,
                refused: g.refused,
            })
            .collect();
        v.sort_by(|a, b| a.group.cmp(&b.group));
        v
    }
}

#[cfg(test)]
mod tests;
