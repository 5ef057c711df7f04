//! Per-partition bookkeeping: the committed offset, the highest offset delivered, the
//! re-delivery count of each re-delivered offset, the connections that fetched it, and
//! the commit-stall clock. Decides what counts as a re-delivery and why it happened;
//! hands gated partitions to [`super::isolation`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::config::{DetectConfig, DetectorLimits};
use super::isolation::{Failure, Isolation};
use super::{
    Action, ConnId, DeliveryDecision, Event, IsolationOutcome, PartitionKey, PartitionStatus,
    Phase, Reason, Report, Visible,
};

/// Where reports of one key go.
pub(crate) struct Sink<'a> {
    key: &'a PartitionKey,
    reports: &'a mut Vec<Report>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(key: &'a PartitionKey, reports: &'a mut Vec<Report>) -> Self {
        Sink { key, reports }
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.reports.push(Report {
            key: self.key.clone(),
            event,
        });
    }
}

/// Re-delivery count of one offset.
#[derive(Debug, Clone)]
pub(crate) struct OffsetCount {
    /// Deliveries (the first one included; a re-delivery after a stall adds two).
    pub count: u32,
    /// First delivery as far as known.
    pub first: Instant,
    /// Latest delivery.
    pub last: Instant,
    /// Longest failing session: from the commit moving (or the previous re-delivery)
    /// to this re-delivery. A hang shows here as its eviction time.
    pub max_gap: Duration,
    /// How the latest re-delivery looked.
    pub reason: Reason,
}

/// A member of the group went away since the last delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Connection closed without LeaveGroup.
    Lost,
    /// LeaveGroup.
    Left,
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
    conns: Vec<ConnSeen>,
    history: VecDeque<Delivered>,
    /// Start of the stall clock: the commit moved, a re-delivery was counted, or records
    /// became outstanding.
    progress_at: Instant,
    stalled: bool,
    /// A member that already had records fetched again while the commit was stalled.
    fetched_while_stalled: bool,
    departed: Option<Departure>,
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
            conns: Vec::new(),
            history: VecDeque::new(),
            progress_at: now,
            stalled: false,
            fetched_while_stalled: false,
            departed: None,
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
    /// failure: the same connection went back (a retry), or a member left or was lost
    /// since the last delivery. A plain move to another member with nobody gone is what
    /// a rebalance looks like, stalled commit or not.
    fn classify(&self, conn: ConnId) -> (Reason, bool) {
        let same_conn = self.conns.iter().any(|c| c.conn == conn);
        let strong = same_conn || self.departed.is_some();
        let reason = if self.stalled {
            Reason::Stalled
        } else if same_conn {
            Reason::SeekBack
        } else if self.departed == Some(Departure::Lost) {
            Reason::CrashLoop
        } else {
            Reason::Redelivery
        };
        (reason, strong)
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
        self.departed = None;
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
        if self.is_redelivery(v.first, conn) && self.rebalance_redelivery() {
            // The group rebalanced and nobody crashed: the new owner (or the same member,
            // on the same connection) starts again from the commit. Not a failure; the
            // stall that a prefetching client shows while it waits is not one either.
            self.clear_stall(now);
        } else if self.is_redelivery(v.first, conn) {
            let (reason, strong) = self.classify(conn);
            let failing = self.isolation.as_ref().map(|iso| iso.is_failure(v.first));
            if failing == Some(true) {
                self.clear_stall(now);
                if strong {
                    self.count_isolation_failure(v.first, reason, now, limits);
                }
                let failure = Failure { reason, strong };
                let committed = self.committed;
                if let Some(iso) = &mut self.isolation {
                    poison = iso.on_failure(failure, committed, &self.counts, &cfg, now, sink);
                }
            } else if failing.is_none() {
                // A stall counts double, unless a rebalance explains part of it: after a
                // rebalance only a member that left or crashed makes this a failure.
                let weight = if reason == Reason::Stalled && !self.rebalanced {
                    2
                } else {
                    1
                };
                let count = self.count_redelivery(v.first, reason, weight, now, limits);
                self.clear_stall(now);
                if count >= cfg.max_deliveries {
                    // A client that kept fetching while its application hung looks, in
                    // isolation, like a consumer idle at the gate: quiet windows would
                    // lie about it.
                    let hangs = reason == Reason::Stalled && fetched_while_stalled;
                    self.start_isolation(v.first, hangs, now, sink);
                }
            }
        }
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
        DeliveryDecision { action, poison }
    }

    /// A re-delivery now follows a rebalance of the group that no departed member
    /// explains. A clean LeaveGroup still explains it (an application that closes its
    /// consumer on a poison record and restarts, or a hung one evicted by its own
    /// client): only a rebalance with nobody gone is benign.
    fn rebalance_redelivery(&self) -> bool {
        self.rebalanced && self.departed.is_none()
    }

    /// A failure in isolation counts toward the verdict of exactly the records it is
    /// attributable to: the offset re-fetched (the seek-back or restart position), and
    /// the one record of a single-record window. Failures of wider windows only narrow.
    fn count_isolation_failure(
        &mut self,
        first: i64,
        reason: Reason,
        now: Instant,
        limits: &DetectorLimits,
    ) {
        let single = self
            .isolation
            .as_ref()
            .and_then(|iso| iso.single_record_window());
        self.count_redelivery(first, reason, 1, now, limits);
        if let Some(s) = single.filter(|s| *s != first) {
            self.count_redelivery(s, reason, 1, now, limits);
        }
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

    fn start_isolation(&mut self, origin: i64, hangs: bool, now: Instant, sink: &mut Sink) {
        let Some(count) = self.counts.get(&origin) else {
            return;
        };
        let range_end = self.high_delivered.unwrap_or(origin).max(origin);
        sink.emit(Event::IsolationStarted {
            offset: origin,
            range_end,
            deliveries: count.count,
            reason: count.reason,
        });
        self.isolation = Some(Isolation::start(origin, range_end, count, hangs, now));
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
        sink.emit(Event::IsolationEnded { outcome });
        match outcome {
            IsolationOutcome::Diverted => {
                // The poison is hidden: the group will re-fetch from its commit and pass it.
                // Count afresh, so that refetch is a first delivery again.
                self.counts.clear();
                self.conns.clear();
                self.history.clear();
                self.high_delivered = None;
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
        self.clear_stall(now);
        self.counts.retain(|o, _| *o >= offset);
        self.history.retain(|d| d.last >= offset);
        if let Some(iso) = &mut self.isolation {
            if let Some(outcome) = iso.on_commit(offset, now) {
                self.leave_isolation(outcome, sink);
            }
        }
    }

    pub(crate) fn member_gone(&mut self, conn: ConnId, now: Instant, lost: bool) {
        self.conns.retain(|c| c.conn != conn);
        let departure = if lost {
            Departure::Lost
        } else {
            Departure::Left
        };
        // A crash outranks a clean leave as an explanation.
        if self.departed != Some(Departure::Lost) {
            self.departed = Some(departure);
        }
        self.last_seen = self.last_seen.max(now);
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

    /// Adds counts learned from another sidecar.
    pub(crate) fn merge_count(
        &mut self,
        offset: i64,
        count: u32,
        first: Instant,
        last: Instant,
        delivered_to: i64,
        limits: &DetectorLimits,
    ) {
        if self.committed.is_some_and(|c| c > offset) || count < 2 {
            return;
        }
        let entry = self.counts.entry(offset).or_insert(OffsetCount {
            count,
            first,
            last,
            max_gap: Duration::ZERO,
            reason: Reason::Redelivery,
        });
        entry.count = entry.count.max(count);
        entry.first = entry.first.min(first);
        entry.last = entry.last.max(last);
        let high = delivered_to.max(offset);
        self.high_delivered = Some(self.high_delivered.map_or(high, |h| h.max(high)));
        self.cap_counts(offset, limits);
    }
}
