//! The isolation search: gate a suspect partition and bisect on the window end until one
//! record is left.
//!
//! Invariant: the poison is in `(good_to, range_end]`. `good_to` rises with commits (proof
//! of processing) and, tentatively, with windows that stay quiet while the consumer asks
//! for more; `range_end` falls to the highest offset delivered before each failure. The
//! group only ever receives records up to `window_end`, which starts at the re-delivered
//! offset itself (a consumer that retries per record names its poison at once) and then
//! sits halfway between the two bounds.
//!
//! Only strong failures count: the same connection going back (an in-process retry), or
//! a member leaving or being lost before another fetches the window again. A partition
//! merely moving to another member is what a rebalance looks like; it never narrows the
//! search nor confirms a record.
//!
//! Quiet-window evidence is what lets a consumer that commits every N records be searched
//! at all, but it can lie, so it is used only when it cannot:
//! - the consumer must be asking for more right now (a hung Java client stops fetching);
//! - not for a consumer that commits what it processed (then quiet means hung or slow),
//!   nor for one seen fetching while its application hung (librdkafka-style prefetch);
//! - the quiet timeout is at least twice the longest time this consumer took to fail
//!   (a hang shows as its eviction time), and evidence gathered with a shorter timeout
//!   is dropped when that grows; a failure inside a window believed good drops it too.
//!
//! A search that makes no progress for long is abandoned: never a stuck partition.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::DetectConfig;
use super::deliveries::OffsetCount;
use super::report::Sink;
use super::{Action, Event, IsolationOutcome, IsolationStatus, Poison, Reason, Visible};

/// Longest quiet timeout, in multiples of `isolation_idle_timeout`.
const QUIET_CAP: u32 = 32;

/// Committed single-record windows after a failure before the windows start to double:
/// a consumer that commits after each poll resumes a few records before the one it
/// crashed on, and stepping to it one record at a time costs round trips, not failures.
const STEP_RECORDS: u32 = 16;

/// A window committed later than this after it went out: the consumer commits on an
/// interval, and windows grow at once.
const SLOW_COMMIT: Duration = Duration::from_secs(1);

/// A failure seen while isolated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    /// How it looked.
    pub reason: Reason,
    /// Whether it is strong evidence: a seek-back, or a member lost or left, rather than
    /// the partition simply moving to another member.
    pub strong: bool,
    /// Whether this partition is the only one the failure can be blamed on: a seek-back
    /// on it, or a crash of a member that held nothing else unprocessed.
    pub solo: bool,
}

/// Quiet-window evidence: records up to `good_to` were delivered and no failure followed
/// within `timeout`.
#[derive(Debug, Clone, Copy)]
struct Tentative {
    good_to: i64,
    timeout: Duration,
}

/// The gate of one isolated partition.
#[derive(Debug)]
pub(crate) struct Isolation {
    origin: i64,
    /// Highest offset that can still be the poison.
    pub range_end: i64,
    /// Highest offset proven (by commit) or assumed (below the re-delivered offset) good.
    base_good: i64,
    tentative: Option<Tentative>,
    window_end: i64,
    /// Highest offset delivered since the last failure.
    delivered_end: Option<i64>,
    /// Latest delivery or commit: the quiet clock.
    quiet_since: Instant,
    /// When the window end last moved up.
    window_opened: Instant,
    /// The consumer asked for offsets past the window since it was set.
    asked_beyond: bool,
    /// Latest delivery to the group.
    last_delivery: Option<Instant>,
    /// The consumer once committed a whole window while waiting at the gate: it commits
    /// what it has processed, so a quiet window means hung or slow, not processed.
    commits_when_done: bool,
    /// The consumer hangs while its client keeps fetching: a quiet window may be a hung
    /// one, so quiet windows prove nothing.
    hangs: bool,
    /// Latest fetch past the window end.
    last_ask_beyond: Option<Instant>,
    /// Latest narrowing of the search (either bound, the window, or the commit moved).
    last_progress: Instant,
    /// Slowest failure seen: delivery to re-delivery.
    max_latency: Duration,
    failures: u32,
    confirm_offset: i64,
    /// Failures of `confirm_offset` while it was the only unproven record delivered to a
    /// member that had nothing else unprocessed.
    confirmations: u32,
    /// Size of the next window above the good records: it doubles each time the group
    /// commits a whole window and drops back to one record after a failure, so the
    /// search walks up from the commit, where a consumer that crashed on a record left
    /// it, before it bisects.
    gallop: i64,
    /// The consumer has committed a whole window: windows are proven by commits.
    commit_successes: bool,
    /// Windows committed since the latest failure.
    steps: u32,
    backoff_until: Option<Instant>,
    first_delivery: Instant,
    /// The record handed to the proxy for diversion.
    pub diverting: Option<i64>,
    /// When the dead-letter write in flight was handed out; the partition is held
    /// meanwhile, so the consumer does not fail on the record once more.
    write_in_flight: Option<Instant>,
    /// Taken over from a shared state (another sidecar, or this one before a restart)
    /// and nothing handed out since: the client may hold records of a later window.
    restored: bool,
}

impl Isolation {
    pub(crate) fn start(
        origin: i64,
        range_end: i64,
        count: &OffsetCount,
        hangs: bool,
        now: Instant,
    ) -> Self {
        Isolation {
            origin,
            range_end,
            base_good: origin.saturating_sub(1),
            tentative: None,
            window_end: origin,
            delivered_end: None,
            quiet_since: now,
            window_opened: now,
            asked_beyond: false,
            last_delivery: None,
            commits_when_done: false,
            hangs,
            last_ask_beyond: None,
            last_progress: now,
            max_latency: count.max_gap,
            failures: 0,
            confirm_offset: -1,
            confirmations: 0,
            gallop: 1,
            commit_successes: false,
            steps: 0,
            backoff_until: None,
            first_delivery: count.first,
            diverting: None,
            write_in_flight: None,
            restored: false,
        }
    }

    pub(crate) fn status(&self) -> IsolationStatus {
        IsolationStatus {
            origin: self.origin,
            good_to: self.good_to(),
            window_end: self.window_end,
            range_end: self.range_end,
            failures: self.failures,
            diverting: self.diverting,
            candidate: self.candidate(),
            confirmations: self.confirmations,
        }
    }

    fn good_to(&self) -> i64 {
        self.tentative
            .map_or(self.base_good, |t| t.good_to.max(self.base_good))
    }

    /// Whether the search concerns `offset` (a diversion of it ends the isolation).
    pub(crate) fn concerns(&self, offset: i64) -> bool {
        self.diverting == Some(offset) || (offset > self.good_to() && offset <= self.range_end)
    }

    /// Start of the stall clock in isolation: the gate opening a window or handing out
    /// records is new work, and waiting at the gate is not a stall.
    pub(crate) fn work_given_at(&self) -> Instant {
        self.last_delivery
            .map_or(self.window_opened, |d| d.max(self.window_opened))
    }

    /// The consumer has received the window and keeps asking for more.
    pub(crate) fn waiting_at_gate(&self, cfg: &DetectConfig, now: Instant) -> bool {
        let recent = cfg.isolation_idle_timeout / 4;
        self.asked_beyond
            && self
                .last_ask_beyond
                .is_some_and(|t| now.saturating_duration_since(t) <= recent)
    }

    /// How long a window must stay quiet to count as processed.
    fn quiet_timeout(&self, cfg: &DetectConfig) -> Duration {
        let base = cfg.isolation_idle_timeout;
        base.max(self.max_latency.saturating_mul(2))
            .min(base.saturating_mul(QUIET_CAP))
    }

    /// Moves the window end up from the good records: by the gallop size, at most halfway
    /// into the remaining range.
    fn next_window(&mut self, now: Instant) {
        self.last_progress = now;
        let good = self.good_to();
        let half = (self.range_end.saturating_sub(good) / 2).max(1);
        let end = good
            .saturating_add(half.min(self.gallop.max(1)))
            .min(self.range_end);
        if end > self.window_end {
            self.window_opened = now;
        }
        self.window_end = end;
        self.asked_beyond = false;
        self.quiet_since = now;
    }

    /// What the client may receive of `v`, asked from `fetch_offset`.
    pub(crate) fn gate(
        &mut self,
        fetch_offset: i64,
        v: Visible,
        cfg: &DetectConfig,
        now: Instant,
    ) -> Action {
        if let Some(since) = self.write_in_flight {
            // Hold the record back while its dead-letter write is in flight, but not
            // forever: a write that never answers must not block the partition. The
            // records before it still go out.
            if now.saturating_duration_since(since) < cfg.isolation_idle_timeout {
                let poison = self.diverting.unwrap_or(self.window_end);
                if fetch_offset >= poison || v.first >= poison {
                    return Action::Withhold;
                }
                return if v.last >= poison {
                    Action::Trim {
                        last_offset: poison - 1,
                    }
                } else {
                    Action::Pass
                };
            }
            self.write_in_flight = None;
        }
        if let Some(until) = self.backoff_until {
            if now < until {
                return Action::Withhold;
            }
            self.backoff_until = None;
        }
        if self.past_the_window(fetch_offset) {
            // The client holds records this search never handed it: it got them before
            // the search was taken over from a shared state (which lags behind the commits
            // and windows of a sidecar killed a moment later), or it sought forward. What
            // it has is behind it; its next record is the window, so that its commit
            // proves something and the search goes on.
            self.window_end = fetch_offset;
            self.window_opened = now;
            self.asked_beyond = false;
            self.quiet_since = now;
            self.last_progress = now;
        }
        let end = self.window_end;
        if fetch_offset > end {
            self.note_ask_beyond(now);
            return Action::Withhold;
        }
        if v.first > end {
            // No record at the window end (compaction, hidden records): let the next one
            // through so the client can move; it is the window's end now.
            self.window_end = v.first;
            return if v.last > v.first {
                Action::Trim {
                    last_offset: v.first,
                }
            } else {
                Action::Pass
            };
        }
        if v.last > end {
            Action::Trim { last_offset: end }
        } else {
            Action::Pass
        }
    }

    /// Whether the client asks from past what this search handed out: more than one
    /// record past the window, or just past it when the window was handed out before
    /// the search was restored.
    fn past_the_window(&self, fetch_offset: i64) -> bool {
        let next = self.window_end.saturating_add(1);
        fetch_offset > next || (fetch_offset == next && self.restored)
    }

    pub(crate) fn note_delivered(&mut self, last: i64, now: Instant) {
        self.restored = false;
        self.delivered_end = Some(self.delivered_end.map_or(last, |d| d.max(last)));
        self.quiet_since = now;
        self.last_delivery = Some(now);
    }

    pub(crate) fn note_fetch_without_records(&mut self, fetch_offset: i64, now: Instant) {
        if fetch_offset > self.window_end {
            self.note_ask_beyond(now);
        }
    }

    fn note_ask_beyond(&mut self, now: Instant) {
        self.asked_beyond = true;
        self.last_ask_beyond = Some(now);
    }

    /// The single record the search has narrowed to, while it is not yet being diverted:
    /// the record to probe alone.
    pub(crate) fn candidate(&self) -> Option<i64> {
        (self.diverting.is_none() && self.good_to().saturating_add(1) >= self.range_end)
            .then_some(self.range_end)
    }

    /// The record to deliver alone, holding the group's other partitions back: the
    /// candidate, or the single record of a window at the bottom of the range. A
    /// failure of it then names it.
    pub(crate) fn probe_record(&self) -> Option<i64> {
        if self.diverting.is_some() {
            return None;
        }
        let next = self.good_to().saturating_add(1);
        (self.window_end == next || next >= self.range_end).then_some(next.min(self.range_end))
    }

    /// Failures seen in isolation (changes with each failure).
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    fn poison(&self, offset: i64, deliveries: u32, reason: Reason, now: Instant) -> Poison {
        Poison {
            offset,
            deliveries,
            first_delivery: self.first_delivery,
            last_delivery: now,
            reason,
        }
    }

    /// A failure inside the window: narrow the range, maybe name the poison.
    /// `involved(offset)` is how many failures so far (this one included) the record at
    /// `offset` was delivered in and not committed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_failure(
        &mut self,
        f: Failure,
        resume: i64,
        committed: Option<i64>,
        involved: &dyn Fn(i64) -> u32,
        cfg: &DetectConfig,
        now: Instant,
        sink: &mut Sink,
    ) -> Option<Poison> {
        if !f.strong {
            // The partition moved to another member with nobody leaving or crashing: a
            // rebalance looks exactly like this. Not a failure.
            return None;
        }
        let delivered = self.delivered_end.take()?;
        self.failures = self.failures.saturating_add(1);
        self.last_progress = now;

        // How long this consumer takes to fail once it has its records. (The time since
        // the re-delivered offset was last delivered would also count the quiet waits.)
        if let Some(d) = self.last_delivery {
            self.max_latency = self.max_latency.max(now.saturating_duration_since(d));
        }
        let timeout = self.quiet_timeout(cfg);
        if self.tentative.is_some_and(|t| t.timeout < timeout) {
            // This consumer fails slower than we waited: quiet windows proved nothing.
            self.tentative = None;
        }
        if delivered <= self.good_to() {
            // A failure inside what we believed good: drop the belief.
            if self.tentative.is_some_and(|t| delivered <= t.good_to) {
                self.tentative = None;
            }
            if delivered <= self.base_good {
                let floor = committed.map_or(self.origin, |c| c).saturating_sub(1);
                self.base_good = floor.min(delivered.saturating_sub(1));
            }
        }
        // The group resumes at `resume`: what lies below it is committed, hidden or gone,
        // and a seek-back says the records before it were processed.
        if resume <= delivered && resume.saturating_sub(1) > self.base_good {
            self.base_good = resume.saturating_sub(1);
        }
        // The failure names one record when exactly one unproven record was out, and
        // nothing else the member held could have caused it.
        let good_before = self.good_to();
        let named = f.solo && delivered.min(self.range_end) == good_before.saturating_add(1);
        self.range_end = self.range_end.min(delivered);
        if let Some(until) = now.checked_add(cfg.backoff(self.failures)) {
            self.backoff_until = (until > now).then_some(until);
        }
        self.asked_beyond = false;
        self.quiet_since = now;
        if self.commit_successes {
            self.gallop = 1;
        }
        self.steps = 0;

        if let Some(p) = self.diverting {
            // Still not diverted: hand the record out again so the proxy can retry a
            // failed write.
            self.write_in_flight = Some(now);
            return Some(self.poison(p, involved(p).saturating_add(1), f.reason, now));
        }
        let good = self.good_to();
        if good.saturating_add(1) < self.range_end {
            self.next_window(now);
            return None;
        }
        let suspect = self.range_end;
        if self.confirm_offset != suspect {
            self.confirm_offset = suspect;
            self.confirmations = 0;
        }
        if named && delivered.min(suspect) == suspect {
            self.confirmations = self.confirmations.saturating_add(1);
        }
        self.window_end = suspect;
        // The record must have been in `max_deliveries` failures, and failed alone at
        // least `isolation_confirmations` times: a failure shared with other partitions'
        // records never convicts a record by itself.
        let failures = involved(suspect);
        if self.confirmations < cfg.isolation_confirmations || failures < cfg.max_deliveries {
            return None;
        }
        self.diverting = Some(suspect);
        self.write_in_flight = Some(now);
        // Deliveries: each failure, and the first delivery.
        let poison = self.poison(suspect, failures.saturating_add(1), f.reason, now);
        sink.emit(Event::PoisonFound {
            offset: suspect,
            deliveries: poison.deliveries,
            reason: f.reason,
        });
        Some(poison)
    }

    /// The dead-letter write of `offset` failed: deliver the record again, so the next
    /// failure hands it out for another write.
    pub(crate) fn divert_failed(&mut self, offset: i64) {
        if self.diverting == Some(offset) {
            self.write_in_flight = None;
        }
    }

    /// The commit moved to `committed`; returns how isolation ends, if it does.
    pub(crate) fn on_commit(&mut self, committed: i64, now: Instant) -> Option<IsolationOutcome> {
        self.base_good = self.base_good.max(committed.saturating_sub(1));
        self.quiet_since = now;
        self.last_progress = now;
        if let Some(p) = self.diverting {
            return (committed > p).then_some(IsolationOutcome::CommitPassedPoison);
        }
        if committed > self.range_end {
            return Some(IsolationOutcome::Transient);
        }
        if self.tentative.is_some_and(|t| t.good_to < committed) {
            self.tentative = None;
        }
        if committed > self.window_end {
            if self.asked_beyond {
                self.commits_when_done = true;
            }
            self.commit_successes = true;
            self.steps = self.steps.saturating_add(1);
            // A consumer that takes long to commit a window (an auto-commit interval)
            // would make every single-record step cost that long: double at once.
            let took = now.saturating_duration_since(self.work_given_at());
            if took > SLOW_COMMIT {
                self.steps = self.steps.max(STEP_RECORDS);
            }
            if self.steps >= STEP_RECORDS {
                self.gallop = self.gallop.saturating_mul(2);
            }
            self.next_window(now);
        }
        None
    }

    /// A window that stayed quiet while the consumer asked for more is taken as
    /// processed; returns how isolation ends, if it does.
    pub(crate) fn check_idle(
        &mut self,
        cfg: &DetectConfig,
        now: Instant,
        sink: &mut Sink,
    ) -> Option<IsolationOutcome> {
        if self.diverting.is_some() {
            return None;
        }
        let give_up = cfg.isolation_idle_timeout.saturating_mul(QUIET_CAP * 2);
        if now.saturating_duration_since(self.last_progress) >= give_up {
            return Some(IsolationOutcome::Unresolved);
        }
        if !self.asked_beyond || self.delivered_end.is_none() {
            return None;
        }
        // The consumer must still be asking: a client that stopped fetching may be hung.
        if !self.waiting_at_gate(cfg, now) {
            return None;
        }
        if self.commits_when_done || self.hangs {
            // This consumer commits what it has processed, or kept fetching while it hung:
            // a quiet window means hung or slow, not processed. Wait for the failure (an
            // eviction comes) or the commit.
            return None;
        }
        let timeout = self.quiet_timeout(cfg);
        let quiet_for = now.saturating_duration_since(self.quiet_since);
        if quiet_for < timeout {
            return None;
        }
        let previous_end = self.window_end;
        self.tentative = Some(Tentative {
            good_to: previous_end.max(self.good_to()),
            timeout,
        });
        if self.good_to() >= self.range_end {
            return Some(IsolationOutcome::NoFailure);
        }
        // Windows proven by waiting cost a timeout each: bisect instead of galloping.
        self.gallop = i64::MAX / 4;
        self.next_window(now);
        sink.emit(Event::WindowWidened {
            previous_end,
            window_end: self.window_end,
            quiet_for,
        });
        None
    }
}

/// The isolation search in the form the sidecars of a group share through the state
/// topic, so the sidecar that serves the partition next continues the same search.
/// Clock readings do not travel: the receiver restarts its timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationSnapshot {
    /// Offset whose re-deliveries started isolation.
    pub origin: i64,
    /// Highest offset that can still be the poison.
    pub range_end: i64,
    /// Highest offset proven or assumed good.
    pub good_to: i64,
    /// Last offset the group may receive.
    pub window_end: i64,
    /// Next window size above the good records.
    pub gallop: i64,
    /// Windows are proven by commits.
    pub commit_successes: bool,
    /// Quiet windows prove nothing for this consumer.
    pub quiet_proves_nothing: bool,
    /// Failures seen in isolation.
    pub failures: u32,
    /// The single suspect being confirmed, and its solo failures.
    pub confirm_offset: i64,
    /// Solo failures of `confirm_offset`.
    pub confirmations: u32,
    /// The record being written to the dead-letter topic.
    pub diverting: Option<i64>,
    /// Slowest failure seen, in milliseconds.
    pub max_latency_ms: u64,
}

impl Isolation {
    pub(crate) fn snapshot(&self) -> IsolationSnapshot {
        IsolationSnapshot {
            origin: self.origin,
            range_end: self.range_end,
            good_to: self.good_to(),
            window_end: self.window_end,
            gallop: self.gallop,
            commit_successes: self.commit_successes,
            quiet_proves_nothing: self.commits_when_done || self.hangs,
            failures: self.failures,
            confirm_offset: self.confirm_offset,
            confirmations: self.confirmations,
            diverting: self.diverting,
            max_latency_ms: u64::try_from(self.max_latency.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The search another sidecar left; its timers start now. A record it was diverting
    /// stays held back while that write completes.
    pub(crate) fn restore(s: &IsolationSnapshot, first_delivery: Instant, now: Instant) -> Self {
        Isolation {
            origin: s.origin,
            range_end: s.range_end,
            base_good: s.good_to,
            tentative: None,
            window_end: s.window_end,
            delivered_end: None,
            quiet_since: now,
            window_opened: now,
            asked_beyond: false,
            last_delivery: None,
            commits_when_done: s.quiet_proves_nothing,
            hangs: false,
            last_ask_beyond: None,
            last_progress: now,
            max_latency: Duration::from_millis(s.max_latency_ms),
            failures: s.failures,
            confirm_offset: s.confirm_offset,
            confirmations: s.confirmations,
            gallop: s.gallop.max(1),
            commit_successes: s.commit_successes,
            steps: 0,
            backoff_until: None,
            first_delivery,
            diverting: s.diverting,
            write_in_flight: s.diverting.map(|_| now),
            restored: true,
        }
    }
}
