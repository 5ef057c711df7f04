//! Per-partition bookkeeping: the committed offset, the highest offset delivered, the
//! re-delivery count of each re-delivered offset, the connections that fetched it, and
//! the commit-stall clock. Decides what counts as a re-delivery and why it happened;
//! hands gated partitions to [`super::isolation`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::{DetectConfig, DetectorLimits};
use super::deliveries::OffsetCount;
use super::isolation::{Failure, Isolation};
use super::report::Sink;
use super::{
    Action, ConnId, DeliveryDecision, Event, IsolationOutcome, PartitionStatus, Phase, Poison,
    Reason, Visible,
};

/// One failure of the partition: the records `lo..=hi` were out (delivered, not
/// committed) when the consumer failed, so each of them may have caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedWindow {
    /// Where the group resumes: the committed offset, or the re-fetched one.
    pub lo: i64,
    /// Highest offset delivered since the previous failure.
    pub hi: i64,
    /// How much the failure counts (a stall counts double).
    pub weight: u32,
    /// The crash this failure is part of (the same id on every partition the member
    /// held), 0 for a failure of this partition alone (a seek-back).
    #[serde(default)]
    pub crash: u64,
}

#[derive(Debug, Clone, Copy)]
struct ConnSeen {
    conn: ConnId,
    /// Last offset of the latest delivery on this connection.
    last_delivered: i64,
}

#[derive(Debug, Clone, Copy)]
struct Delivered {
    first: i64,
    last: i64,
    at: Instant,
}

/// Detection state of one (group, topic, partition).
#[derive(Debug)]
pub(crate) struct PartitionState {
    /// The config of the latest delivery call (tick and commit use it).
    pub cfg: DetectConfig,
    /// Committed offset (the next offset the group will consume), when known.
    pub committed: Option<i64>,
    /// Highest offset delivered.
    pub high_delivered: Option<i64>,
    /// Re-delivered offsets and their counts.
    pub counts: BTreeMap<i64, OffsetCount>,
    /// Failures whose windows the commit has not passed yet, oldest first.
    pub failures: VecDeque<FailedWindow>,
    /// First and highest offsets delivered since the latest failure.
    since_failure: Option<(i64, i64)>,
    /// Connection of the latest delivery.
    pub last_conn: Option<ConnId>,
    /// Bumped by every change of the search state; the highest version wins between
    /// sidecars.
    pub version: u64,
    /// The search state changed since it was last shared.
    pub dirty: bool,
    /// When this partition's candidate was last probed alone.
    pub last_probe: Option<Instant>,
    /// Latest fetch of the partition through this sidecar (a search taken over from
    /// another sidecar has none until its consumer fetches here).
    pub fetched_at: Option<Instant>,
    conns: Vec<ConnSeen>,
    history: VecDeque<Delivered>,
    /// Start of the stall clock: the commit moved, a re-delivery was counted, or records
    /// became outstanding.
    progress_at: Instant,
    stalled: bool,
    /// A member that already had records fetched again while the commit was stalled.
    fetched_while_stalled: bool,
    /// Since the commit last moved, a client kept fetching while its application hung:
    /// quiet windows cannot be trusted for this partition.
    hang_seen: bool,
    /// The group rebalanced (a member sent JoinGroup) since the latest delivery.
    rebalanced: bool,
    /// Latest call for this key.
    pub last_seen: Instant,
    /// The gate, while isolated.
    pub isolation: Option<Isolation>,
}

impl PartitionState {
    pub(crate) fn new(cfg: DetectConfig, now: Instant) -> Self {
        PartitionState {
            cfg,
            committed: None,
            high_delivered: None,
            counts: BTreeMap::new(),
            failures: VecDeque::new(),
            since_failure: None,
            last_conn: None,
            version: 0,
            dirty: false,
            last_probe: None,
            fetched_at: None,
            conns: Vec::new(),
            history: VecDeque::new(),
            progress_at: now,
            stalled: false,
            fetched_while_stalled: false,
            hang_seen: false,
            rebalanced: false,
            last_seen: now,
            isolation: None,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match &self.isolation {
            Some(iso) if iso.diverting.is_some() => Phase::Diverting,
            Some(_) => Phase::Isolating,
            None if self.counts.values().any(|c| c.count >= 2) => Phase::Suspect,
            None => Phase::Normal,
        }
    }

    pub(crate) fn status(&self) -> PartitionStatus {
        PartitionStatus {
            phase: self.phase(),
            committed: self.committed,
            delivered_to: self.high_delivered,
            tracked_offsets: self.counts.len(),
            max_count: self.counts.values().map(|c| c.count).max().unwrap_or(0),
            stalled: self.stalled,
            isolation: self.isolation.as_ref().map(Isolation::status),
            open_failures: self.failures.len(),
            version: self.version,
            owner: None,
            probing: false,
        }
    }

    /// Records were delivered beyond the commit and not yet committed.
    fn outstanding(&self) -> bool {
        self.high_delivered
            .is_some_and(|h| self.committed.is_none_or(|c| h >= c))
    }

    /// A delivery starting at `first` re-delivers records: they were delivered before,
    /// the commit has not passed `first`, and this is not `conn` simply moving forward.
    fn is_redelivery(&self, first: i64, conn: ConnId) -> bool {
        let Some(high) = self.high_delivered else {
            return false;
        };
        if first > high || self.committed.is_some_and(|c| c > first) {
            return false;
        }
        match self.conns.iter().find(|c| c.conn == conn) {
            Some(seen) => first <= seen.last_delivered,
            None => true,
        }
    }

    /// How a re-delivery on `conn` looks, and whether it is strong evidence of a
    /// failure: the same connection went back (a retry). A plain move to another member
    /// with nobody known to be gone is what a rebalance looks like, stalled commit or not
    /// (a member that crashed or left was already counted when it went).
    fn classify(&self, conn: ConnId) -> (Reason, bool) {
        let same_conn = self.conns.iter().any(|c| c.conn == conn);
        let reason = if self.stalled {
            Reason::Stalled
        } else if same_conn {
            Reason::SeekBack
        } else {
            Reason::Redelivery
        };
        (reason, same_conn)
    }

    /// Records were delivered since the latest failure and the commit has not passed the
    /// highest of them: a failure now would concern them.
    pub(crate) fn outstanding_since_failure(&self) -> bool {
        self.since_failure
            .is_some_and(|(_, hi)| self.committed.is_none_or(|c| hi >= c))
    }

    /// Where the group resumes after a failure now: its commit, or the first record
    /// delivered since the latest failure.
    pub(crate) fn resume_offset(&self) -> Option<i64> {
        // The first record delivered since the latest failure is the first one at or past
        // the commit: records between are hidden (diverted) or gone (compaction).
        let first = self.since_failure.map(|(lo, _)| lo);
        match (self.committed, first) {
            (Some(c), Some(f)) => Some(c.max(f)),
            (c, f) => c.or(f),
        }
    }

    /// Whether records of this partition were delivered on `conn`.
    /// Nothing to judge in a delivery from `position` on: no search, failure, suspect or
    /// stall, and nothing at or past `position` delivered before (not a re-delivery).
    pub(crate) fn quiet_from(&self, position: i64) -> bool {
        self.isolation.is_none()
            && self.failures.is_empty()
            && !self.stalled
            && self.counts.values().all(|c| c.count < 2)
            && self.high_delivered.is_none_or(|h| position > h)
    }

    pub(crate) fn knows_conn(&self, conn: ConnId) -> bool {
        self.conns.iter().any(|c| c.conn == conn)
    }

    /// The commit is stalled and the client kept fetching meanwhile: a hang.
    pub(crate) fn hangs(&self) -> bool {
        self.stalled && self.fetched_while_stalled
    }

    /// The crashes the record at `offset` was out in.
    pub(crate) fn crashes_of(&self, offset: i64) -> Vec<u64> {
        self.failures
            .iter()
            .filter(|w| w.crash != 0 && w.lo <= offset && offset <= w.hi)
            .map(|w| w.crash)
            .collect()
    }

    /// Forgets failures that a diverted record explains.
    pub(crate) fn explained(&mut self, crashes: &[u64]) {
        let before = self.failures.len();
        self.failures
            .retain(|w| w.crash == 0 || !crashes.contains(&w.crash));
        if self.failures.len() != before {
            self.touch();
        }
    }

    /// The state changed in a way the other sidecars must learn.
    fn touch(&mut self) {
        self.version = self.version.saturating_add(1);
        self.dirty = true;
    }

    fn first_delivery_of(&self, offset: i64) -> Option<Instant> {
        self.history
            .iter()
            .find(|d| d.first <= offset && offset <= d.last)
            .map(|d| d.at)
    }

    /// Counts a re-delivery of `offset`; returns its new count.
    fn count_redelivery(
        &mut self,
        offset: i64,
        reason: Reason,
        weight: u32,
        now: Instant,
        limits: &DetectorLimits,
    ) -> u32 {
        // How long one failing session lasted: since the commit last moved or the last
        // re-delivery was counted (a hang shows here as its eviction time).
        let gap = now.saturating_duration_since(self.progress_at);
        let first = self.first_delivery_of(offset).unwrap_or(now);
        let entry = self.counts.entry(offset).or_insert(OffsetCount {
            count: 1,
            first,
            last: now,
            max_gap: Duration::ZERO,
            reason,
        });
        entry.count = entry.count.saturating_add(weight);
        entry.last = now;
        entry.max_gap = entry.max_gap.max(gap);
        entry.reason = reason;
        let count = entry.count;
        self.cap_counts(offset, limits);
        count
    }

    /// Drops the least recently re-delivered offsets beyond the per-key cap.
    pub(crate) fn cap_counts(&mut self, keep: i64, limits: &DetectorLimits) {
        while self.counts.len() > limits.max_counts_per_key.max(1) {
            let oldest = self
                .counts
                .iter()
                .filter(|(o, _)| **o != keep)
                .min_by_key(|(_, c)| c.last)
                .map(|(o, _)| *o);
            match oldest {
                Some(o) => {
                    self.counts.remove(&o);
                }
                None => break,
            }
        }
    }

    fn record_delivery(
        &mut self,
        first: i64,
        last: i64,
        conn: ConnId,
        now: Instant,
        limits: &DetectorLimits,
    ) {
        if !self.outstanding() {
            self.progress_at = now;
        }
        self.high_delivered = Some(self.high_delivered.map_or(last, |h| h.max(last)));
        match self.conns.iter_mut().find(|c| c.conn == conn) {
            Some(seen) => seen.last_delivered = last,
            None => {
                if self.conns.len() >= limits.max_conns_per_key.max(1) {
                    self.conns.remove(0);
                }
                self.conns.push(ConnSeen {
                    conn,
                    last_delivered: last,
                });
            }
        }
        if self.history.len() >= limits.history_per_key.max(1) {
            self.history.pop_front();
        }
        self.history.push_back(Delivered {
            first,
            last,
            at: now,
        });
        self.since_failure = Some(match self.since_failure {
            Some((lo, hi)) => (lo.min(first), hi.max(last)),
            None => (first, last),
        });
        self.last_conn = Some(conn);
        self.rebalanced = false;
        if let Some(iso) = &mut self.isolation {
            iso.note_delivered(last, now);
        }
    }

    /// Sets the stall flag (and reports it, once per episode) when the commit has been
    /// still for `stall_timeout` with records outstanding.
    fn refresh_stall(&mut self, now: Instant, sink: &mut Sink) {
        if self.stalled || !self.outstanding() {
            return;
        }
        if self
            .isolation
            .as_ref()
            .is_some_and(|iso| iso.waiting_at_gate(&self.cfg, now))
        {
            // The consumer keeps asking for what the gate holds back: it waits for us.
            return;
        }
        // A window opened by the gate restarts the clock: a consumer held back by the
        // gate is not stalled by its own doing.
        let since = self.isolation.as_ref().map_or(self.progress_at, |iso| {
            iso.work_given_at().max(self.progress_at)
        });
        let still_for = now.saturating_duration_since(since);
        if still_for >= self.cfg.stall_timeout {
            self.stalled = true;
            sink.emit(Event::StallStarted {
                committed: self.committed,
                delivered_to: self.high_delivered.unwrap_or_default(),
                still_for,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn delivery(
        &mut self,
        cfg: DetectConfig,
        fetch_offset: i64,
        visible: Option<Visible>,
        conn: ConnId,
        now: Instant,
        limits: &DetectorLimits,
        sink: &mut Sink,
    ) -> DeliveryDecision {
        self.cfg = cfg;
        self.last_seen = now;
        self.refresh_stall(now, sink);
        self.check_isolation_idle(now, sink);
        let fetched_while_stalled = self.fetched_while_stalled;
        if self.stalled && self.conns.iter().any(|c| c.conn == conn) {
            self.fetched_while_stalled = true;
            self.hang_seen = true;
        }
        let Some(v) = visible else {
            if let Some(iso) = &mut self.isolation {
                iso.note_fetch_without_records(fetch_offset, now);
            }
            return DeliveryDecision::pass();
        };
        // A broker never sends last < first; be safe if a caller does.
        let v = Visible {
            first: v.first.max(fetch_offset),
            last: v.last.max(v.first.max(fetch_offset)),
        };
        let mut poison = None;
        // Only what was delivered since the latest failure can fail now: a consumer
        // resuming after a failure already counted (a crash, an eviction) is not failing
        // again, nor is one asking again after a withheld answer.
        let fresh = self.since_failure.is_some_and(|(_, hi)| v.first <= hi);
        if fresh && self.is_redelivery(v.first, conn) {
            if self.rebalanced {
                // The group rebalanced and nobody crashed: the new owner (or the same
                // member, on the same connection) starts again from the commit. Not a
                // failure; the stall a prefetching client shows while it waits is not
                // one either.
                self.clear_stall(now);
                self.since_failure = None;
            } else {
                let (reason, strong) = self.classify(conn);
                if !strong && self.isolation.is_some() {
                    // In isolation only strong evidence counts: this is the partition
                    // moving to another member.
                    self.clear_stall(now);
                    return self.finish_delivery(fetch_offset, v, conn, now, limits, None);
                }
                // A stall counts double, unless a rebalance explains part of it.
                let weight = if reason == Reason::Stalled { 2 } else { 1 };
                let hangs = reason == Reason::Stalled && fetched_while_stalled;
                // A seek-back concerns this partition alone; so does a hang, which
                // happens on one record.
                let solo = strong || reason == Reason::Stalled;
                poison = self.fail(
                    v.first,
                    FailureKind {
                        reason,
                        strong,
                        solo,
                        weight,
                        hangs,
                        crash: 0,
                    },
                    now,
                    limits,
                    sink,
                );
            }
        }
        self.finish_delivery(fetch_offset, v, conn, now, limits, poison)
    }

    /// Gates the delivery and notes what went out.
    fn finish_delivery(
        &mut self,
        fetch_offset: i64,
        v: Visible,
        conn: ConnId,
        now: Instant,
        limits: &DetectorLimits,
        poison: Option<Poison>,
    ) -> DeliveryDecision {
        let cfg = self.cfg;
        let action = match &mut self.isolation {
            None => Action::Pass,
            Some(iso) => iso.gate(fetch_offset, v, &cfg, now),
        };
        match action {
            Action::Pass => self.record_delivery(v.first, v.last, conn, now, limits),
            Action::Trim { last_offset } => {
                self.record_delivery(v.first.min(last_offset), last_offset, conn, now, limits)
            }
            Action::Withhold => {}
        }
        DeliveryDecision {
            action,
            poison,
            hold: None,
        }
    }

    /// A failure of what was delivered since the latest failure; the group resumes at
    /// `lo`. Counts it, starts or narrows the isolation search, and names the poison
    /// record once one record is proven to fail.
    pub(crate) fn fail(
        &mut self,
        lo: i64,
        kind: FailureKind,
        now: Instant,
        limits: &DetectorLimits,
        sink: &mut Sink,
    ) -> Option<Poison> {
        // A seek-back names its record: the application went back to the one it failed
        // on. A crash or a hang may have been caused by any record it held.
        let delivered = self.since_failure.map_or(lo, |(_, hi)| hi).max(lo);
        let hi = if kind.reason == Reason::SeekBack {
            lo
        } else {
            delivered
        };
        self.since_failure = None;
        // Counted before the stall clock restarts: the time since progress is how long
        // this consumer takes to fail (a hang shows as its eviction time).
        let count = self.count_redelivery(lo, kind.reason, kind.weight, now, limits);
        self.clear_stall(now);
        self.touch();
        if kind.strong || self.isolation.is_none() {
            if self.failures.len() >= limits.history_per_key.max(1) {
                self.failures.pop_front();
            }
            self.failures.push_back(FailedWindow {
                lo,
                hi,
                weight: kind.weight,
                crash: kind.crash,
            });
        }
        let cfg = self.cfg;
        let committed = self.committed;
        let failures = &self.failures;
        if let Some(iso) = &mut self.isolation {
            let failure = Failure {
                reason: kind.reason,
                strong: kind.strong,
                solo: kind.solo,
            };
            let involved = |o: i64| involved_in(failures, o);
            return iso.on_failure(failure, lo, committed, &involved, &cfg, now, sink);
        }
        // Isolate when a record out now has been out in enough failures: counted at the
        // resume offset, or anywhere in this failure's window (a batch committer
        // resumes at a different offset each time).
        let peak = peak_involvement(&self.failures, lo, hi);
        if count >= cfg.max_deliveries || peak.saturating_add(1) >= cfg.max_deliveries {
            // A client that kept fetching while its application hung looks, in
            // isolation, like a consumer idle at the gate: quiet windows would lie.
            self.start_isolation(lo, delivered, kind.hangs, now, sink);
        }
        None
    }

    /// The group rebalanced: the next re-delivery is benign unless a member left or
    /// was lost.
    pub(crate) fn rebalance(&mut self, now: Instant) {
        self.rebalanced = true;
        self.last_seen = self.last_seen.max(now);
    }

    /// A stall episode ends: the commit moved, or a re-delivery was counted.
    fn clear_stall(&mut self, now: Instant) {
        self.stalled = false;
        self.fetched_while_stalled = false;
        self.progress_at = now;
    }

    fn start_isolation(
        &mut self,
        origin: i64,
        delivered: i64,
        hangs: bool,
        now: Instant,
        sink: &mut Sink,
    ) {
        let Some(count) = self.counts.get(&origin) else {
            return;
        };
        let range_end = delivered.max(origin);
        sink.emit(Event::IsolationStarted {
            offset: origin,
            range_end,
            deliveries: count.count,
            reason: count.reason,
        });
        let hangs = hangs || self.hang_seen;
        self.isolation = Some(Isolation::start(origin, range_end, count, hangs, now));
        self.touch();
    }

    fn check_isolation_idle(&mut self, now: Instant, sink: &mut Sink) {
        let cfg = self.cfg;
        if let Some(iso) = &mut self.isolation {
            if let Some(outcome) = iso.check_idle(&cfg, now, sink) {
                self.leave_isolation(outcome, sink);
            }
        }
    }

    pub(crate) fn leave_isolation(&mut self, outcome: IsolationOutcome, sink: &mut Sink) {
        let Some(iso) = self.isolation.take() else {
            return;
        };
        // A new detection episode starts: its first failing session is timed from here.
        self.progress_at = self.last_seen;
        self.touch();
        sink.emit(Event::IsolationEnded { outcome });
        match outcome {
            IsolationOutcome::Diverted => {
                // The poison is hidden: the group will re-fetch from its commit and pass it.
                // Count afresh, so that refetch is a first delivery again; the failures it
                // explains are forgotten.
                if let Some(p) = iso.status().diverting {
                    self.failures.retain(|w| !(w.lo <= p && p <= w.hi));
                }
                self.counts.clear();
                self.conns.clear();
                self.history.clear();
                self.high_delivered = None;
                self.since_failure = None;
            }
            IsolationOutcome::NoFailure | IsolationOutcome::Unresolved => {
                let end = iso.range_end;
                self.counts.retain(|o, _| *o > end);
            }
            _ => {}
        }
    }

    pub(crate) fn commit(&mut self, offset: i64, now: Instant, sink: &mut Sink) {
        self.last_seen = now;
        if self.committed == Some(offset) {
            return;
        }
        self.committed = Some(offset);
        self.hang_seen = false;
        self.clear_stall(now);
        self.counts.retain(|o, _| *o >= offset);
        self.history.retain(|d| d.last >= offset);
        let windows = self.failures.len();
        self.failures.retain(|w| w.hi >= offset);
        if self.failures.len() != windows {
            self.touch();
        }
        if let Some(iso) = &mut self.isolation {
            self.version = self.version.saturating_add(1);
            self.dirty = true;
            if let Some(outcome) = iso.on_commit(offset, now) {
                self.leave_isolation(outcome, sink);
            }
        }
    }

    pub(crate) fn diverted(&mut self, offset: i64, sink: &mut Sink) {
        self.counts.remove(&offset);
        let ends_isolation = self
            .isolation
            .as_ref()
            .is_some_and(|iso| iso.concerns(offset));
        if ends_isolation {
            self.leave_isolation(IsolationOutcome::Diverted, sink);
        }
    }

    pub(crate) fn divert_failed(&mut self, offset: i64) {
        if let Some(iso) = &mut self.isolation {
            iso.divert_failed(offset);
        }
    }

    pub(crate) fn tick(&mut self, now: Instant, sink: &mut Sink) {
        self.refresh_stall(now, sink);
        self.check_isolation_idle(now, sink);
    }

    /// The search, in the form other sidecars import.
    pub(crate) fn search(&self) -> Search {
        Search {
            version: self.version,
            committed: self.committed,
            delivered_to: self.high_delivered,
            counts: self
                .counts
                .iter()
                .map(|(o, c)| SharedCount {
                    offset: *o,
                    count: c.count,
                    reason: c.reason,
                })
                .collect(),
            failures: self.failures.iter().copied().collect(),
            isolation: self.isolation.as_ref().map(Isolation::snapshot),
        }
    }

    /// Takes over the search another sidecar shared, when it is newer than ours.
    pub(crate) fn adopt(&mut self, s: &Search, now: Instant, limits: &DetectorLimits) {
        self.version = s.version;
        self.dirty = false;
        if let Some(c) = s.committed {
            self.committed = Some(self.committed.map_or(c, |mine| mine.max(c)));
        }
        if let Some(d) = s.delivered_to {
            self.high_delivered = Some(self.high_delivered.map_or(d, |h| h.max(d)));
        }
        self.counts = s
            .counts
            .iter()
            .take(limits.max_counts_per_key.max(1))
            .map(|c| {
                (
                    c.offset,
                    OffsetCount {
                        count: c.count,
                        first: now,
                        last: now,
                        max_gap: Duration::ZERO,
                        reason: c.reason,
                    },
                )
            })
            .collect();
        self.failures = s
            .failures
            .iter()
            .rev()
            .take(limits.history_per_key.max(1))
            .rev()
            .copied()
            .collect();
        // What this sidecar delivered before belongs to the failure the other one saw.
        self.since_failure = None;
        self.isolation = s
            .isolation
            .as_ref()
            .map(|i| Isolation::restore(i, now, now));
        self.last_seen = now;
    }
}

/// How many failures, weighted, the record at `offset` was out in.
fn involved_in(failures: &VecDeque<FailedWindow>, offset: i64) -> u32 {
    failures
        .iter()
        .filter(|w| w.lo <= offset && offset <= w.hi)
        .map(|w| w.weight)
        .sum()
}

/// The highest involvement of any record in `lo..=hi`.
fn peak_involvement(failures: &VecDeque<FailedWindow>, lo: i64, hi: i64) -> u32 {
    // The involvement only changes at window starts: try each start inside the range.
    failures
        .iter()
        .map(|w| w.lo.max(lo))
        .chain(std::iter::once(lo))
        .filter(|o| *o <= hi)
        .map(|o| involved_in(failures, o))
        .max()
        .unwrap_or(0)
}

/// How a failure looked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailureKind {
    pub reason: Reason,
    /// Strong evidence (a seek-back, a member gone), not just a move to another member.
    pub strong: bool,
    /// Nothing but this partition's records can have caused it.
    pub solo: bool,
    /// How much it counts toward isolation (a stall counts double).
    pub weight: u32,
    /// The client kept fetching while its application hung.
    pub hangs: bool,
    /// Id of the crash (shared by the partitions it concerns), 0 when local.
    pub crash: u64,
}

/// A re-delivery count in its shared form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCount {
    /// The re-fetched offset.
    pub offset: i64,
    /// Deliveries counted.
    pub count: u32,
    /// How the latest failure looked.
    pub reason: Reason,
}

/// One partition's search state as the sidecars of a group share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    /// Bumped by every change; the highest wins.
    pub version: u64,
    /// Committed offset, when known.
    pub committed: Option<i64>,
    /// Highest offset delivered to the group.
    pub delivered_to: Option<i64>,
    /// Re-delivery counts at the offsets the group resumed from.
    pub counts: Vec<SharedCount>,
    /// Failures the commit has not passed.
    pub failures: Vec<FailedWindow>,
    /// The isolation search, when isolated.
    pub isolation: Option<super::isolation::IsolationSnapshot>,
}
