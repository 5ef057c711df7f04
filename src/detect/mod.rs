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
mod deliveries;
mod isolation;
mod partition;
mod report;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use config::{
    format_duration, parse_duration, ConfigError, DetectConfig, DetectorLimits, DurationError,
};
pub use isolation::IsolationSnapshot;
pub use partition::{FailedWindow, Search, SharedCount};
pub use report::{Event, IsolationOutcome, Report};

use partition::{FailureKind, PartitionState};
use report::Sink;

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
    /// Why records were held back, when they were.
    pub hold: Option<Hold>,
}

impl DeliveryDecision {
    /// Forward untouched, nothing found.
    pub fn pass() -> Self {
        DeliveryDecision {
            action: Action::Pass,
            poison: None,
            hold: None,
        }
    }
}

/// Why a partition's records were held back (withheld or cut) in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hold {
    /// The partition's own search: records past its window, a backoff, a record whose
    /// dead-letter write is in flight.
    Search,
    /// Another partition of the group has its one suspect record probed alone, so that a
    /// failure now can only be that record's.
    Probe,
}

impl Hold {
    /// The label in metrics: `search`, `probe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Search => "search",
            Hold::Probe => "probe",
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
    /// The operator-facing name (the dead-letter format's spelling): `crash-loop`,
    /// `seek-back`, `stalled`, `redelivery`.
    pub fn as_str(self) -> &'static str {
        crate::dead_letter::Reason::from(self).as_str()
    }
}

impl From<Reason> for crate::dead_letter::Reason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::CrashLoop => crate::dead_letter::Reason::CrashLoop,
            Reason::SeekBack => crate::dead_letter::Reason::SeekBack,
            Reason::Stalled => crate::dead_letter::Reason::Stalled,
            Reason::Redelivery => crate::dead_letter::Reason::Redelivery,
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
    /// The single record the search narrowed to, not yet diverted.
    pub candidate: Option<i64>,
    /// Failures of the candidate while it was the only record out.
    pub confirmations: u32,
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
    /// Failures whose records the commit has not passed.
    pub open_failures: usize,
    /// Version of the search state shared between sidecars.
    pub version: u64,
    /// The sidecar whose search state this is, when another one wrote it last.
    pub owner: Option<String>,
    /// Whether this partition's candidate is probed alone right now.
    pub probing: bool,
}

/// How long after a member is gone its failure is judged: every connection of a crashed
/// process is closed by then, so the records it held are all known.
const SETTLE: Duration = Duration::from_millis(200);

/// How long a closed connection is remembered.
const CLOSED_MEMORY: Duration = Duration::from_secs(600);

/// A member that went away (crash or LeaveGroup), waiting to be judged.
#[derive(Debug, Clone)]
struct Departure {
    group: String,
    /// The member's connections (its group connection, and those its client fetched on).
    conns: Vec<ConnId>,
    at: Instant,
    lost: bool,
}

/// One partition's single suspect record, delivered alone: every other partition of the
/// group is held back until it is processed, fails, or the probe times out.
#[derive(Debug, Clone)]
struct Probe {
    key: PartitionKey,
    candidate: i64,
    failures: u32,
    since: Instant,
}

/// The detection state of every watched (group, topic, partition).
#[derive(Debug, Default)]
pub struct Detector {
    limits: DetectorLimits,
    keys: HashMap<PartitionKey, PartitionState>,
    reports: Vec<Report>,
    key_limit_reported: bool,
    /// Connections closed recently.
    closed: HashMap<ConnId, Instant>,
    /// Members gone, not yet judged.
    departures: Vec<Departure>,
    /// Per group: its partitions in isolation.
    isolating: HashMap<String, BTreeSet<PartitionKey>>,
    /// Per group: the probe under way.
    probes: HashMap<String, Probe>,
    /// Poison records named outside a delivery (a crash judged later), to divert.
    decided: Vec<(PartitionKey, Poison)>,
    /// Per key: the sidecar that last wrote its search state, when not this one.
    owners: HashMap<PartitionKey, String>,
    /// Last crash id handed out.
    last_crash: u64,
}

impl Detector {
    /// An empty detector with these memory bounds.
    pub fn new(limits: DetectorLimits) -> Self {
        Detector {
            limits,
            last_crash: crash_id_seed(),
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

    /// Keeps the per-group set of isolated partitions current after `key` changed.
    fn track(&mut self, key: &PartitionKey) {
        let isolated = self.keys.get(key).is_some_and(|s| s.isolation.is_some());
        if isolated {
            self.isolating
                .entry(key.group.clone())
                .or_default()
                .insert(key.clone());
        } else if let Some(set) = self.isolating.get_mut(&key.group) {
            set.remove(key);
            if set.is_empty() {
                self.isolating.remove(&key.group);
            }
        }
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
        // A member gone from this group is judged now if this delivery may re-deliver
        // what it held (another connection asks for a partition with records out);
        // otherwise after [`SETTLE`], once all of its process's connections closed.
        let redelivers = self
            .keys
            .get(key)
            .is_some_and(|s| s.outstanding_since_failure() && !s.knows_conn(conn));
        self.settle(now, redelivers.then_some(key.group.as_str()));
        let limits = self.limits;
        if !self.ensure_key(key, *cfg, now) {
            return DeliveryDecision::pass();
        }
        if let Some(state) = self.keys.get_mut(key) {
            state.fetched_at = Some(now);
        }
        if visible.is_some() && self.probe_holds(key, cfg, now) {
            if let Some(state) = self.keys.get_mut(key) {
                state.last_seen = now;
            }
            return DeliveryDecision {
                action: Action::Withhold,
                poison: None,
                hold: Some(Hold::Probe),
            };
        }
        let Some(state) = self.keys.get_mut(key) else {
            return DeliveryDecision::pass();
        };
        let mut sink = Sink::new(key, &mut self.reports);
        let mut decision =
            state.delivery(*cfg, fetch_offset, visible, conn, now, &limits, &mut sink);
        if decision.action != Action::Pass && decision.hold.is_none() {
            decision.hold = Some(Hold::Search);
        }
        if decision.poison.is_none() {
            // A crash judged just now named this partition's poison: this delivery
            // carries it.
            if let Some(i) = self.decided.iter().position(|(k, _)| k == key) {
                decision.poison = Some(self.decided.remove(i).1);
            }
        }
        self.touched(key);
        decision
    }

    /// Whether a delivery to `key` from `position` on can only be passed on unchanged:
    /// nothing of the group is searched, probed, judged or departing, and the partition
    /// has no open failure, no suspect, no stall, and has not delivered `position` before.
    /// Then the proxy may stream the fetch response and report the delivery afterwards
    /// ([`Detector::delivery`] returns a plain pass for it).
    pub fn may_stream(&self, key: &PartitionKey, position: i64) -> bool {
        let group = key.group.as_str();
        if self.probes.contains_key(group)
            || self.isolating.get(group).is_some_and(|g| !g.is_empty())
            || self.departures.iter().any(|d| d.group == group)
            || self.decided.iter().any(|(k, _)| k == key)
        {
            return false;
        }
        self.keys.get(key).is_none_or(|s| s.quiet_from(position))
    }

    /// Bookkeeping after `key`'s state changed.
    fn touched(&mut self, key: &PartitionKey) {
        if self.keys.get(key).is_some_and(|s| s.dirty) {
            self.owners.remove(key);
        }
        self.track(key);
    }

    /// Whether `key` must be held back for another partition's probe. Starts the next
    /// probe when none is under way: the least recently probed partition whose search
    /// is down to one record and whose consumer fetches through this sidecar. (A search
    /// taken over from the state topic whose partition is consumed through another
    /// sidecar is probed there: holding this sidecar's partitions for it would only
    /// starve them, probe after probe.)
    fn probe_holds(&mut self, key: &PartitionKey, cfg: &DetectConfig, now: Instant) -> bool {
        let group = key.group.as_str();
        if let Some(p) = self.probes.get(group) {
            let iso = self.keys.get(&p.key).and_then(|s| s.isolation.as_ref());
            let on = iso.is_some_and(|i| {
                i.probe_record() == Some(p.candidate) && i.failures() == p.failures
            }) && now.saturating_duration_since(p.since) < cfg.probe_timeout;
            if !on {
                let done = p.key.clone();
                self.probes.remove(group);
                if let Some(s) = self.keys.get_mut(&done) {
                    s.last_probe = Some(now);
                }
            }
        }
        if !self.probes.contains_key(group) {
            let Some(isolating) = self.isolating.get(group) else {
                return false;
            };
            let next = isolating
                .iter()
                .filter_map(|k| {
                    let s = self.keys.get(k)?;
                    let fetched_here = s
                        .fetched_at
                        .is_some_and(|t| now.saturating_duration_since(t) <= cfg.probe_timeout);
                    if !fetched_here {
                        return None;
                    }
                    let iso = s.isolation.as_ref()?;
                    Some((s.last_probe, k, iso.probe_record()?, iso.failures()))
                })
                .min_by_key(|(last, ..)| *last)
                .map(|(_, k, candidate, failures)| Probe {
                    key: k.clone(),
                    candidate,
                    failures,
                    since: now,
                });
            match next {
                Some(p) => {
                    self.probes.insert(group.to_string(), p);
                }
                None => return false,
            }
        }
        self.probes.get(group).is_some_and(|p| p.key != *key)
    }

    /// Judges the members gone for at least [`SETTLE`] (all of `group`'s at once when it
    /// is given: its consumer is fetching again). A member that crashed or left while
    /// it held records it had not committed failed on one of them: every partition it
    /// held such records of is charged with the failure, and the failure names a
    /// partition alone only when it held nothing else.
    fn settle(&mut self, now: Instant, group: Option<&str>) {
        if self.departures.is_empty() {
            return;
        }
        let (due, wait): (Vec<Departure>, Vec<Departure>) = std::mem::take(&mut self.departures)
            .into_iter()
            .partition(|d| {
                group == Some(d.group.as_str()) || now.saturating_duration_since(d.at) >= SETTLE
            });
        self.departures = wait;
        for d in due {
            let gone = |c: ConnId| d.conns.contains(&c) || self.closed.contains_key(&c);
            let participants: Vec<PartitionKey> = self
                .keys
                .iter()
                .filter(|(k, s)| {
                    k.group == d.group
                        && s.outstanding_since_failure()
                        && s.last_conn.is_some_and(gone)
                })
                .map(|(k, _)| k.clone())
                .collect();
            let solo = participants.len() == 1;
            let limits = self.limits;
            self.last_crash = self.last_crash.wrapping_add(1).max(1);
            let crash = self.last_crash;
            for key in participants {
                let Some(state) = self.keys.get_mut(&key) else {
                    continue;
                };
                let Some(lo) = state.resume_offset() else {
                    continue;
                };
                let stalled = state.status().stalled;
                let hangs = state.hangs();
                let reason = if stalled {
                    Reason::Stalled
                } else if d.lost {
                    Reason::CrashLoop
                } else {
                    Reason::Redelivery
                };
                let kind = FailureKind {
                    reason,
                    strong: true,
                    solo,
                    weight: if stalled { 2 } else { 1 },
                    hangs,
                    crash,
                };
                let mut sink = Sink::new(&key, &mut self.reports);
                if let Some(p) = state.fail(lo, kind, now, &limits, &mut sink) {
                    self.decided.push((key.clone(), p));
                }
                self.touched(&key);
            }
        }
    }

    /// Poison records named since the last call outside a delivery (a crash judged a
    /// moment after it happened): the proxy writes each to the dead-letter topic.
    pub fn take_decided(&mut self) -> Vec<(PartitionKey, Poison)> {
        std::mem::take(&mut self.decided)
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
        self.touched(key);
    }

    /// A commit read from the broker rather than seen on the wire (after a search was
    /// taken over from the shared state, which may lag behind the group's commits).
    /// Applied only when it is ahead of the commit this detector knows: a commit that
    /// passed through the proxy meanwhile is newer, and an older one would look like a
    /// seek back.
    pub fn commit_read(&mut self, key: &PartitionKey, offset: i64, now: Instant) {
        let ahead = self
            .keys
            .get(key)
            .is_some_and(|s| s.committed.is_none_or(|c| offset > c));
        if ahead {
            self.commit(key, offset, now);
        }
    }

    /// Whether this detector has state for `key`.
    pub fn tracks(&self, key: &PartitionKey) -> bool {
        self.keys.contains_key(key)
    }

    /// A client connection closed (whatever it carried).
    pub fn conn_closed(&mut self, conn: ConnId, now: Instant) {
        self.closed.insert(conn, now);
    }

    /// The last connection of a member of the group closed without LeaveGroup (likely a
    /// crash); `conn` is that connection. Judged a moment later (see [`Self::settle`]).
    pub fn member_lost(&mut self, group: &str, conn: ConnId, now: Instant) {
        self.closed.insert(conn, now);
        self.departures.push(Departure {
            group: group.to_string(),
            conns: vec![conn],
            at: now,
            lost: true,
        });
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

    /// A member of the group sent LeaveGroup; `conns` are its connections (the one the
    /// leave came on, and those its client fetched on, which stay open).
    pub fn member_left(&mut self, group: &str, conns: &[ConnId], now: Instant) {
        self.departures.push(Departure {
            group: group.to_string(),
            conns: conns.to_vec(),
            at: now,
            lost: false,
        });
    }

    /// The proxy wrote the poison record at `offset` to the dead-letter topic, got the
    /// acknowledgement, and hides it from now on.
    pub fn diverted(&mut self, key: &PartitionKey, offset: i64) {
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        // The crashes it was out in are explained: they count against no other record
        // of the group.
        let crashes = state.crashes_of(offset);
        let mut sink = Sink::new(key, &mut self.reports);
        state.diverted(offset, &mut sink);
        self.touched(key);
        if crashes.is_empty() {
            return;
        }
        let others: Vec<PartitionKey> = self
            .keys
            .keys()
            .filter(|k| k.group == key.group && *k != key)
            .cloned()
            .collect();
        for k in others {
            if let Some(s) = self.keys.get_mut(&k) {
                s.explained(&crashes);
            }
            self.touched(&k);
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

    /// Time passes: members gone are judged, stalls, quiet isolation windows, idle keys.
    /// Returns every report gathered since the last tick.
    pub fn tick(&mut self, now: Instant) -> Vec<Report> {
        self.settle(now, None);
        self.closed
            .retain(|_, at| now.saturating_duration_since(*at) < CLOSED_MEMORY);
        let limits = self.limits;
        let mut evicted = Vec::new();
        let mut changed = Vec::new();
        for (key, state) in self.keys.iter_mut() {
            let mut sink = Sink::new(key, &mut self.reports);
            let was = state.isolation.is_some();
            state.tick(now, &mut sink);
            if was != state.isolation.is_some() {
                changed.push(key.clone());
            }
            let idle = now.saturating_duration_since(state.last_seen);
            let limit = match state.phase() {
                Phase::Normal | Phase::Suspect => limits.evict_idle,
                Phase::Isolating | Phase::Diverting => limits.evict_idle.saturating_mul(4),
            };
            if idle >= limit {
                evicted.push(key.clone());
            }
        }
        for key in changed {
            self.track(&key);
        }
        for key in evicted {
            if let Some(state) = self.keys.remove(&key) {
                self.track(&key);
                self.owners.remove(&key);
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
        self.keys.get(key).map(|s| {
            let mut st = s.status();
            st.owner = self.owners.get(key).cloned();
            st.probing = self.probes.get(&key.group).is_some_and(|p| p.key == *key);
            st
        })
    }

    /// Every key that is not in the normal phase or still has open failures, with its
    /// state, sorted.
    pub fn searches(&self) -> Vec<(PartitionKey, PartitionStatus)> {
        let mut v: Vec<_> = self
            .keys
            .iter()
            .filter(|(_, s)| s.phase() != Phase::Normal || !s.failures.is_empty())
            .filter_map(|(k, _)| Some((k.clone(), self.state(k)?)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Partitions with a re-delivered offset, not (yet) isolated.
    pub fn suspect_partitions(&self) -> usize {
        self.count_phase(|p| p == Phase::Suspect)
    }

    /// Partitions isolated or diverting.
    pub fn isolated_partitions(&self) -> usize {
        self.count_phase(|p| matches!(p, Phase::Isolating | Phase::Diverting))
    }

    /// Keys tracked.
    pub fn tracked_partitions(&self) -> usize {
        self.keys.len()
    }

    fn count_phase(&self, f: impl Fn(Phase) -> bool) -> usize {
        self.keys.values().filter(|s| f(s.phase())).count()
    }

    /// The search states changed here since the last call, to share with the other
    /// sidecars of their groups.
    pub fn take_changed_searches(&mut self) -> Vec<(PartitionKey, Search)> {
        let mut out = Vec::new();
        for (key, state) in self.keys.iter_mut() {
            if state.dirty {
                state.dirty = false;
                out.push((key.clone(), state.search()));
            }
        }
        out
    }

    /// A search state another sidecar (`instance`) shared: taken over when it is newer
    /// than this sidecar's (on a tie, the higher instance name wins, so two sidecars that
    /// changed the same partition at once agree). `me` is this sidecar's instance name.
    pub fn adopt(
        &mut self,
        key: &PartitionKey,
        search: &Search,
        instance: &str,
        me: &str,
        now: Instant,
    ) -> bool {
        let local = self.keys.get(key).map(|s| s.version);
        let newer = match local {
            None => true,
            Some(v) => search.version > v || (search.version == v && instance > me),
        };
        if !newer {
            return false;
        }
        let cfg = self.keys.get(key).map(|s| s.cfg).unwrap_or_default();
        if !self.ensure_key(key, cfg, now) {
            return false;
        }
        let limits = self.limits;
        if let Some(state) = self.keys.get_mut(key) {
            state.adopt(search, now, &limits);
        }
        if instance != me {
            self.owners.insert(key.clone(), instance.to_string());
        }
        self.track(key);
        true
    }
}

/// A starting point for crash ids that another sidecar will not share: ids travel with
/// the search state between sidecars.
fn crash_id_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (nanos ^ (pid << 40) ^ (n << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
