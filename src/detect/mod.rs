//! Poison-record detection from the wire, as pure code.
//!
//! The proxy reports what crosses the wire for each (group, topic, partition): which
//! records a Fetch response delivers, which offsets the group commits, which members
//! disappear. From that alone the [`Detector`] finds the record a consumer group cannot
//! process, and tells the proxy how to gate the partition while it searches:
//!
//! 1. A *re-delivery* is a delivery starting at an offset that was delivered before while
//!    the committed offset has not passed it. When one offset has been delivered
//!    `max_deliveries` times the partition is *isolated*.
//! 2. In isolation the partition is *gated*: the group gets records only up to a window
//!    end, and nothing beyond until a commit proves the window was processed. A failure
//!    (another re-delivery) inside the window halves it; a commit past it moves on. The
//!    search is a bisection on the window end, so a poison record among 500 is named
//!    after about nine windows, whatever the client prefetched.
//! 3. A record is poison once it has itself failed `max_deliveries` times: re-fetched at
//!    exactly its offset (a seek-back or restart position), or failing as the single
//!    record of a window. Failures of wider windows only narrow the search. The decision
//!    carries a [`Poison`], the proxy writes the record to the dead-letter topic, and
//!    reports [`Detector::diverted`] once the write is acknowledged.
//!
//! A re-delivery after a rebalance of the group ([`Detector::rebalance`]) with no member
//! lost or gone since is no failure at all: eager rebalances hand every partition out
//! again from its commit.
//!
//! No clock is read here: every call takes `now`. No socket is touched.

mod config;
mod isolation;
mod partition;
mod report;
mod share;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use config::{
    format_duration, parse_duration, ConfigError, DetectConfig, DetectorLimits, DurationError,
};
pub use report::{Event, IsolationOutcome, Report};
pub use share::DeliveryCount;

use partition::{PartitionState, Sink};

/// The unit of detection: one partition of one topic, as consumed by one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionKey {
    /// Consumer group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl PartitionKey {
    /// Builds a key.
    pub fn new(group: impl Into<String>, topic: impl Into<String>, partition: i32) -> Self {
        PartitionKey {
            group: group.into(),
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {} {}-{}", self.group, self.topic, self.partition)
    }
}

/// Identifies one client connection to the proxy (unique for the proxy's lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The offsets a Fetch response actually shows the client for one partition, after
/// quarantined records were removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible {
    /// Offset of the first record at or after the fetch offset.
    pub first: i64,
    /// Offset of the last record in complete batches.
    pub last: i64,
}

/// What the proxy does with one partition's records in one Fetch response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward the records as they are.
    Pass,
    /// Cut the record set so that its last record is `last_offset`; the client's position
    /// then advances to exactly `last_offset + 1`.
    Trim {
        /// Offset of the last record the client may receive.
        last_offset: i64,
    },
    /// Return no records for this partition this time; the client will ask again.
    Withhold,
}

/// The detector's answer to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDecision {
    /// How to shape this partition's records in this response.
    pub action: Action,
    /// Set when a record is confirmed poison: write it to the dead-letter topic.
    pub poison: Option<Poison>,
}

impl DeliveryDecision {
    /// Forward untouched, nothing found.
    pub fn pass() -> Self {
        DeliveryDecision {
            action: Action::Pass,
            poison: None,
        }
    }
}

/// Why a record was judged poison, in the words an operator reads in the DLQ headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Re-delivered on a new connection after a member of the group was lost (crash).
    CrashLoop,
    /// Re-delivered on the same connection: the application retried in process.
    SeekBack,
    /// Re-delivered after a commit stall: the application hung and was evicted.
    Stalled,
    /// Re-delivered to another member for no visible cause (clean leave, rebalance).
    Redelivery,
}

impl Reason {
    /// The operator-facing name: `crash-loop`, `seek-back`, `stalled`, `redelivery`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CrashLoop => "crash-loop",
            Reason::SeekBack => "seek-back",
            Reason::Stalled => "stalled",
            Reason::Redelivery => "redelivery",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record confirmed poison: the proxy writes it to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Offset of the poison record.
    pub offset: i64,
    /// Deliveries of the record, or of a range holding it, that ended in a failure.
    pub deliveries: u32,
    /// When the record was first delivered (as far as this detector knows).
    pub first_delivery: Instant,
    /// When it was last delivered.
    pub last_delivery: Instant,
    /// How the consumer failed on it.
    pub reason: Reason,
}

/// Where a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Nothing re-delivered.
    Normal,
    /// Some offset was re-delivered, fewer than `max_deliveries` times.
    Suspect,
    /// Gated: searching for the poison record.
    Isolating,
    /// Poison found; waiting for the dead-letter write.
    Diverting,
}

/// The isolation search, for status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationStatus {
    /// Offset whose re-deliveries started isolation.
    pub origin: i64,
    /// Highest offset believed good (the poison is above it).
    pub good_to: i64,
    /// Last offset the group may currently receive.
    pub window_end: i64,
    /// Highest offset that can still be the poison.
    pub range_end: i64,
    /// Failures seen in isolation.
    pub failures: u32,
    /// The offset being diverted, in [`Phase::Diverting`].
    pub diverting: Option<i64>,
}

/// A snapshot of one key's detection state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Where the partition stands.
    pub phase: Phase,
    /// Committed offset, when known.
    pub committed: Option<i64>,
    /// Highest offset delivered to the group.
    pub delivered_to: Option<i64>,
    /// Offsets with a re-delivery count.
    pub tracked_offsets: usize,
    /// Highest delivery count of any offset.
    pub max_count: u32,
    /// Whether the commit is stalled.
    pub stalled: bool,
    /// The isolation search, when isolated.
    pub isolation: Option<IsolationStatus>,
}

/// The detection state of every watched (group, topic, partition).
#[derive(Debug, Default)]
pub struct Detector {
    limits: DetectorLimits,
    keys: HashMap<PartitionKey, PartitionState>,
    reports: Vec<Report>,
    key_limit_reported: bool,
}

impl Detector {
    /// An empty detector with these memory bounds.
    pub fn new(limits: DetectorLimits) -> Self {
        Detector {
            limits,
            ..Default::default()
        }
    }

    /// Makes sure the key is tracked; false when the key limit forbids it.
    fn ensure_key(&mut self, key: &PartitionKey, cfg: DetectConfig, now: Instant) -> bool {
        if self.keys.contains_key(key) {
            return true;
        }
        if self.keys.len() >= self.limits.max_keys {
            if !self.key_limit_reported {
                self.key_limit_reported = true;
                self.reports.push(Report {
                    key: key.clone(),
                    event: Event::KeyLimitReached,
                });
            }
            return false;
        }
        self.keys.insert(key.clone(), PartitionState::new(cfg, now));
        true
    }

    /// One Fetch response partition of a watched topic: the client asked from
    /// `fetch_offset` and would see `visible` (`None`: no records, not a delivery).
    pub fn delivery(
        &mut self,
        cfg: &DetectConfig,
        key: &PartitionKey,
        fetch_offset: i64,
        visible: Option<Visible>,
        conn: ConnId,
        now: Instant,
    ) -> DeliveryDecision {
        let limits = self.limits;
        if !self.ensure_key(key, *cfg, now) {
            return DeliveryDecision::pass();
        }
        let Some(state) = self.keys.get_mut(key) else {
            return DeliveryDecision::pass();
        };
        let mut sink = Sink::new(key, &mut self.reports);
        state.delivery(*cfg, fetch_offset, visible, conn, now, &limits, &mut sink)
    }

    /// A committed offset for the key: a successful OffsetCommit, or an OffsetFetch
    /// answer. A negative offset (no commit yet) is ignored.
    pub fn commit(&mut self, key: &PartitionKey, offset: i64, now: Instant) {
        if offset < 0 {
            return;
        }
        let cfg = self.keys.get(key).map(|s| s.cfg).unwrap_or_default();
        if !self.ensure_key(key, cfg, now) {
            return;
        }
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let mut sink = Sink::new(key, &mut self.reports);
        state.commit(offset, now, &mut sink);
    }

    /// A connection of the group's consumer closed without LeaveGroup (likely a crash).
    pub fn member_lost(&mut self, group: &str, conn: ConnId, now: Instant) {
        for (key, state) in self.keys.iter_mut() {
            if key.group == group {
                state.member_gone(conn, now, true);
            }
        }
    }

    /// A member of the group sent JoinGroup: the group rebalances, and its partitions may
    /// be fetched again from their commits without any failure. A re-delivery that
    /// follows, with no member lost or gone since, is not counted.
    pub fn rebalance(&mut self, group: &str, now: Instant) {
        for (key, state) in self.keys.iter_mut() {
            if key.group == group {
                state.rebalance(now);
            }
        }
    }

    /// A connection of the group's consumer sent LeaveGroup.
    pub fn member_left(&mut self, group: &str, conn: ConnId) {
        for (key, state) in self.keys.iter_mut() {
            if key.group == group {
                let now = state.last_seen;
                state.member_gone(conn, now, false);
            }
        }
    }

    /// The proxy wrote the poison record at `offset` to the dead-letter topic, got the
    /// acknowledgement, and hides it from now on.
    pub fn diverted(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(state) = self.keys.get_mut(key) {
            let mut sink = Sink::new(key, &mut self.reports);
            state.diverted(offset, &mut sink);
        }
    }

    /// The dead-letter write of `offset` failed: the record stays visible, and the next
    /// failure emits it again.
    pub fn divert_failed(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(state) = self.keys.get_mut(key) {
            state.divert_failed(offset);
            self.reports.push(Report {
                key: key.clone(),
                event: Event::DivertFailed { offset },
            });
        }
    }

    /// Time passes: stalls, quiet isolation windows, idle keys. Returns every report
    /// gathered since the last tick.
    pub fn tick(&mut self, now: Instant) -> Vec<Report> {
        let limits = self.limits;
        let mut evicted = Vec::new();
        for (key, state) in self.keys.iter_mut() {
            let mut sink = Sink::new(key, &mut self.reports);
            state.tick(now, &mut sink);
            let idle = now.saturating_duration_since(state.last_seen);
            let limit = match state.phase() {
                Phase::Normal | Phase::Suspect => limits.evict_idle,
                Phase::Isolating | Phase::Diverting => limits.evict_idle.saturating_mul(4),
            };
            if idle >= limit {
                evicted.push(key.clone());
            }
        }
        for key in evicted {
            if let Some(state) = self.keys.remove(&key) {
                let phase = state.phase();
                if phase != Phase::Normal {
                    if matches!(phase, Phase::Isolating | Phase::Diverting) {
                        self.reports.push(Report {
                            key: key.clone(),
                            event: Event::IsolationEnded {
                                outcome: IsolationOutcome::Evicted,
                            },
                        });
                    }
                    self.reports.push(Report {
                        key,
                        event: Event::Evicted { phase },
                    });
                }
            }
        }
        if self.keys.len() < limits.max_keys {
            self.key_limit_reported = false;
        }
        std::mem::take(&mut self.reports)
    }

    /// The detection state of one key.
    pub fn state(&self, key: &PartitionKey) -> Option<PartitionStatus> {
        self.keys.get(key).map(PartitionState::status)
    }

    /// Partitions with a re-delivered offset, not (yet) isolated.
    pub fn suspect_partitions(&self) -> usize {
        self.count_phase(|p| p == Phase::Suspect)
    }

    /// Partitions isolated or diverting.
    pub fn isolated_partitions(&self) -> usize {
        self.count_phase(|p| matches!(p, Phase::Isolating | Phase::Diverting))
    }

    /// The partitions of `group` being isolated or diverted right now.
    pub fn isolating_in_group(&self, group: &str) -> Vec<PartitionKey> {
        self.keys
            .iter()
            .filter(|(k, s)| {
                k.group == group && matches!(s.phase(), Phase::Isolating | Phase::Diverting)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Keys that hold at least one re-delivery count (worth sharing).
    pub fn counted_keys(&self) -> Vec<PartitionKey> {
        self.keys
            .iter()
            .filter(|(_, s)| !s.counts.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Keys tracked.
    pub fn tracked_partitions(&self) -> usize {
        self.keys.len()
    }

    fn count_phase(&self, f: impl Fn(Phase) -> bool) -> usize {
        self.keys.values().filter(|s| f(s.phase())).count()
    }

    /// The key's delivery counts, for sharing with the other sidecars of the group.
    /// `now` and `wall` are the same moment on the monotonic and the wall clock.
    pub fn export_counts(
        &self,
        key: &PartitionKey,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<DeliveryCount> {
        self.keys
            .get(key)
            .map(|s| share::export(key, s, now, wall))
            .unwrap_or_default()
    }

    /// Counts shared by other sidecars: each offset keeps the highest count seen.
    pub fn merge_counts(
        &mut self,
        counts: impl IntoIterator<Item = DeliveryCount>,
        now: Instant,
        wall: SystemTime,
    ) {
        let limits = self.limits;
        for dc in counts {
            let cfg = self.keys.get(&dc.key).map(|s| s.cfg).unwrap_or_default();
            if self.ensure_key(&dc.key, cfg, now) {
                if let Some(state) = self.keys.get_mut(&dc.key) {
                    share::merge(state, &dc, now, wall, &limits);
                }
            }
        }
    }
}
