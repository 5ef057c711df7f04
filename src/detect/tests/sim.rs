//! A deterministic simulated consumer and proxy, to test the detector against client
//! behaviour rather than single calls.
//!
//! One partition, one group. The consumer fetches from its position into a prefetch
//! buffer, processes records in order, commits per record, every N records or on an
//! interval, and on a bad record crashes (new connection, resumes from the commit), seeks
//! back in process (same connection) or hangs until evicted (another member resumes from
//! the commit). The simulated proxy applies each decision to the log and writes poison
//! records to a simulated dead-letter topic, then hides them. Time is simulated.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::detect::{
    Action, ConnId, DetectConfig, Detector, DetectorLimits, PartitionKey, Reason, Report, Visible,
};

/// splitmix64: small, deterministic, good enough for test shapes.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    pub(crate) fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// What the application does with a record it cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnPoison {
    /// The process dies and is restarted; `leave` = it closes its consumer cleanly first.
    Crash { leave: bool },
    /// It catches the error and seeks back to the record, on the same connection.
    SeekBack,
    /// It hangs until evicted; `keeps_fetching` = the client library keeps prefetching.
    Hang { keeps_fetching: bool },
}

/// When the application commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitPolicy {
    PerRecord,
    EveryN(u32),
    IntervalMs(u64),
}

/// A record the application cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    /// Fails every time.
    Permanent,
    /// Fails this many times, then succeeds.
    Transient(u32),
}

/// One simulated run's shape.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub log_len: i64,
    /// Records produced per second after the first `fetch_records` (0: the whole log
    /// exists from the start).
    pub produce_per_sec: u64,
    pub bad: Vec<(i64, Bad)>,
    pub on_poison: OnPoison,
    pub commit: CommitPolicy,
    pub fetch_records: i64,
    pub prefetch: usize,
    pub proc_ms: u64,
    pub restart_ms: u64,
    pub evict_ms: u64,
    /// Fetches that return nothing although records exist (max_bytes too small).
    pub empty_fetch_pct: u32,
    /// The partition moves to another member this often.
    pub rebalance_every_ms: Option<u64>,
    /// Rebalances stop at this time.
    pub rebalance_until_ms: u64,
    pub commit_on_revoke: bool,
    /// Rebalances hand the partition back to the same member (eager protocol: revoked
    /// and reassigned), which fetches again from the commit on the same connection.
    pub rebalance_keeps_member: bool,
    /// The healthy consumer is killed and restarted this often, after a clean commit.
    pub healthy_restart_every_ms: Option<u64>,
    /// The first dead-letter writes that fail.
    pub dlq_fail_first: u32,
    pub cfg: DetectConfig,
    pub time_limit_ms: u64,
    /// Keep long-polling at the log end this long after finishing.
    pub idle_tail_ms: u64,
    pub seed: u64,
    /// Print every step (for debugging a failing seed).
    pub trace: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            log_len: 1000,
            produce_per_sec: 0,
            bad: Vec::new(),
            on_poison: OnPoison::Crash { leave: false },
            commit: CommitPolicy::IntervalMs(5000),
            fetch_records: 500,
            prefetch: 1000,
            proc_ms: 1,
            restart_ms: 2000,
            evict_ms: 120_000,
            empty_fetch_pct: 0,
            rebalance_every_ms: None,
            rebalance_until_ms: u64::MAX,
            commit_on_revoke: true,
            rebalance_keeps_member: false,
            healthy_restart_every_ms: None,
            dlq_fail_first: 0,
            cfg: DetectConfig::default(),
            time_limit_ms: 6 * 3600 * 1000,
            idle_tail_ms: 10_000,
            seed: 1,
            trace: false,
        }
    }
}

/// What happened in one run.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Distinct offsets the detector emitted as poison.
    pub emitted: BTreeSet<i64>,
    pub emissions: Vec<(i64, Reason)>,
    /// Offsets written to the simulated DLQ and hidden.
    pub diverted: BTreeSet<i64>,
    /// Offsets the application processed successfully at least once.
    pub processed: Vec<bool>,
    pub committed: i64,
    pub finished: bool,
    /// New consumer sessions after a failure (crash restarts, evictions).
    pub restarts: u32,
    /// In-process seek-backs.
    pub retries: u32,
    /// Failures on bad records before the first poison was emitted.
    pub failures_to_first_poison: Option<u32>,
    pub failures: u32,
    /// Commits that moved the offset.
    pub commits: u32,
    pub sim_ms: u64,
    pub reports: Vec<Report>,
    /// Sim-invariant violations (a decision the proxy could not apply).
    pub errors: Vec<String>,
    /// Longest gap between a failure and the next delivery to the group, in ms.
    pub max_redelivery_wait_ms: u64,
}

struct Member {
    conn: ConnId,
    fetch_pos: i64,
    buffer: VecDeque<i64>,
    /// Record in process and when processing ends.
    current: Option<(i64, u64)>,
    next_fetch_at: u64,
    next_commit_at: u64,
    since_commit: u32,
    hung_until: Option<u64>,
}

impl Member {
    fn new(conn: ConnId, from: i64, t: u64, s: &Scenario) -> Self {
        let interval = match s.commit {
            CommitPolicy::IntervalMs(ms) => ms,
            _ => u64::MAX / 4,
        };
        Member {
            conn,
            fetch_pos: from,
            buffer: VecDeque::new(),
            current: None,
            next_fetch_at: t,
            next_commit_at: t + interval,
            since_commit: 0,
            hung_until: None,
        }
    }

    /// The application's position: the next record it has not finished.
    fn app_pos(&self) -> i64 {
        self.current
            .map(|(o, _)| o)
            .or_else(|| self.buffer.front().copied())
            .unwrap_or(self.fetch_pos)
    }
}

const GROUP: &str = "sim-group";
const TICK_MS: u64 = 1000;
const LONG_POLL_MS: u64 = 500;
const WITHHELD_WAIT_MS: u64 = 100;
const DLQ_MS: u64 = 30;

struct World<'a> {
    s: &'a Scenario,
    base: Instant,
    key: PartitionKey,
    det: Detector,
    rng: Rng,
    t: u64,
    log_end: i64,
    hidden: BTreeSet<i64>,
    attempts: Vec<u32>,
    committed: Option<i64>,
    next_conn: u64,
    member: Option<Member>,
    down_until: Option<u64>,
    dlq: Vec<(i64, u64)>,
    dlq_failures_left: u32,
    last_failure_at: Option<u64>,
    out: Outcome,
}

/// Runs a scenario to its end (all records committed, then the idle tail) or its time
/// limit.
pub(crate) fn run(s: &Scenario) -> Outcome {
    let mut w = World {
        s,
        base: Instant::now(),
        key: PartitionKey::new(GROUP, "orders", 0),
        det: Detector::new(DetectorLimits::default()),
        rng: Rng::new(s.seed),
        t: 0,
        log_end: if s.produce_per_sec > 0 {
            s.fetch_records.min(s.log_len)
        } else {
            s.log_len
        },
        hidden: BTreeSet::new(),
        attempts: vec![0; usize::try_from(s.log_len).unwrap_or(0)],
        committed: None,
        next_conn: 1,
        member: None,
        down_until: None,
        dlq: Vec::new(),
        dlq_failures_left: s.dlq_fail_first,
        last_failure_at: None,
        out: Outcome {
            processed: vec![false; usize::try_from(s.log_len).unwrap_or(0)],
            ..Default::default()
        },
    };
    w.start_member();
    w.main_loop();
    w.out.committed = w.committed.unwrap_or(0);
    w.out.sim_ms = w.t;
    w.out
}

impl World<'_> {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.t)
    }

    fn start_member(&mut self) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        // The new member's JoinGroup rebalances the group.
        self.det.rebalance(GROUP, self.now());
        if let Some(c) = self.committed {
            // OffsetFetch on start-up tells the proxy where the member resumes.
            self.det.commit(&self.key, c, self.now());
        }
        self.member = Some(Member::new(
            conn,
            self.committed.unwrap_or(0),
            self.t,
            self.s,
        ));
        self.down_until = None;
    }

    fn commit(&mut self, offset: i64) {
        if self.s.trace && self.committed != Some(offset) {
            eprintln!("t={} commit {offset}", self.t);
        }
        if self.committed != Some(offset) {
            self.out.commits += 1;
        }
        self.committed = Some(offset);
        self.det.commit(&self.key, offset, self.now());
    }

    fn done(&self) -> bool {
        self.committed.is_some_and(|c| c >= self.s.log_len) && self.dlq.is_empty()
    }

    fn main_loop(&mut self) {
        let mut next_tick = TICK_MS;
        let mut next_produce = 100;
        let mut next_rebalance = self.s.rebalance_every_ms.unwrap_or(u64::MAX);
        let mut next_healthy_restart = self.s.healthy_restart_every_ms.unwrap_or(u64::MAX);
        let mut finished_at: Option<u64> = None;
        loop {
            if self.t > self.s.time_limit_ms {
                break;
            }
            if finished_at.is_none() && self.done() {
                finished_at = Some(self.t);
                self.out.finished = true;
                next_rebalance = u64::MAX;
                next_healthy_restart = u64::MAX;
            }
            if finished_at.is_some_and(|f| self.t >= f + self.s.idle_tail_ms) {
                break;
            }
            self.complete_dlq_writes();
            if self.t >= next_tick {
                let reports = self.det.tick(self.now());
                self.out.reports.extend(reports);
                self.drain_decided();
                next_tick += TICK_MS;
            }
            if self.s.produce_per_sec > 0 && self.t >= next_produce {
                let add = i64::try_from(self.s.produce_per_sec / 10)
                    .unwrap_or(1)
                    .max(1);
                self.log_end = (self.log_end + add).min(self.s.log_len);
                next_produce += 100;
            }
            if self.t >= next_rebalance {
                self.rebalance();
                next_rebalance += self.s.rebalance_every_ms.unwrap_or(u64::MAX / 2);
                if next_rebalance >= self.s.rebalance_until_ms {
                    next_rebalance = u64::MAX;
                }
            }
            if self.t >= next_healthy_restart {
                self.healthy_restart();
                next_healthy_restart += self.s.healthy_restart_every_ms.unwrap_or(u64::MAX / 2);
            }
            if self.down_until.is_some_and(|d| self.t >= d) {
                self.start_member();
                self.out.restarts += 1;
            }
            self.step_member();
            // Jump to the next moment anything can happen.
            let mut next = next_tick.min(next_rebalance).min(next_healthy_restart);
            if self.s.produce_per_sec > 0 && self.log_end < self.s.log_len {
                next = next.min(next_produce);
            }
            if let Some(d) = self.down_until {
                next = next.min(d);
            }
            for (_, at) in &self.dlq {
                next = next.min(*at);
            }
            if let Some(m) = &self.member {
                next = next.min(m.next_commit_at);
                if let Some(h) = m.hung_until {
                    next = next.min(h);
                }
                if let Some((_, done)) = m.current {
                    if m.hung_until.is_none() {
                        next = next.min(done);
                    }
                } else if !m.buffer.is_empty() && m.hung_until.is_none() {
                    next = next.min(self.t + 1);
                }
                if m.buffer.len() < self.s.prefetch {
                    next = next.min(m.next_fetch_at);
                }
            }
            if let Some(f) = finished_at {
                next = next.min(f + self.s.idle_tail_ms);
            }
            self.t = next.max(self.t + 1);
        }
    }

    /// A poison record named: the simulated proxy writes it to the DLQ.
    fn emit(&mut self, offset: i64, reason: Reason) {
        self.out.emitted.insert(offset);
        self.out.emissions.push((offset, reason));
        if self.out.failures_to_first_poison.is_none() {
            self.out.failures_to_first_poison = Some(self.out.failures);
        }
        if !self.hidden.contains(&offset) && !self.dlq.iter().any(|(o, _)| *o == offset) {
            self.dlq.push((offset, self.t + DLQ_MS));
        }
    }

    /// Poison records named outside a delivery (a crash judged after it happened).
    fn drain_decided(&mut self) {
        for (_, p) in self.det.take_decided() {
            self.emit(p.offset, p.reason);
        }
    }

    fn complete_dlq_writes(&mut self) {
        let t = self.t;
        let due: Vec<i64> = self
            .dlq
            .iter()
            .filter(|(_, at)| *at <= t)
            .map(|(o, _)| *o)
            .collect();
        self.dlq.retain(|(_, at)| *at > t);
        for offset in due {
            if self.dlq_failures_left > 0 {
                self.dlq_failures_left -= 1;
                self.det.divert_failed(&self.key, offset);
            } else {
                self.hidden.insert(offset);
                self.out.diverted.insert(offset);
                self.det.diverted(&self.key, offset);
            }
        }
    }

    fn rebalance(&mut self) {
        let Some(m) = self.member.take() else { return };
        if m.hung_until.is_some() {
            self.member = Some(m);
            return;
        }
        if self.s.commit_on_revoke {
            self.commit(m.app_pos());
        }
        if self.s.rebalance_keeps_member {
            // Every member rejoins; the partition comes back to the same one, whose
            // prefetched records are dropped: it fetches again from the commit.
            self.det.rebalance(GROUP, self.now());
            let mut m = m;
            m.buffer.clear();
            m.current = None;
            m.fetch_pos = self.committed.unwrap_or(0);
            m.next_fetch_at = self.t;
            self.member = Some(m);
            return;
        }
        // The old member stays in the group; a new one takes the partition.
        self.start_member();
    }

    fn healthy_restart(&mut self) {
        let Some(m) = self.member.take() else { return };
        if m.hung_until.is_some() {
            self.member = Some(m);
            return;
        }
        self.commit(m.app_pos());
        self.det.member_lost(GROUP, m.conn, self.now());
        self.down_until = Some(self.t + self.s.restart_ms);
    }

    fn fail(&mut self, offset: i64) {
        if self.s.trace {
            eprintln!("t={} FAIL at {offset} ({:?})", self.t, self.s.on_poison);
        }
        self.out.failures += 1;
        self.last_failure_at = Some(self.t);
        let Some(mut m) = self.member.take() else {
            return;
        };
        match self.s.on_poison {
            OnPoison::Crash { leave } => {
                if leave {
                    self.det.member_left(GROUP, &[m.conn], self.now());
                } else {
                    self.det.member_lost(GROUP, m.conn, self.now());
                }
                let jitter = self.rng.below(self.s.restart_ms / 2 + 1);
                self.down_until = Some(self.t + self.s.restart_ms + jitter);
            }
            OnPoison::SeekBack => {
                self.out.retries += 1;
                m.buffer.clear();
                m.current = None;
                m.fetch_pos = offset;
                m.next_fetch_at = self.t + self.rng.below(50);
                self.member = Some(m);
            }
            OnPoison::Hang { .. } => {
                m.hung_until = Some(self.t + self.s.evict_ms);
                self.member = Some(m);
            }
        }
    }

    fn is_failing(&mut self, offset: i64) -> bool {
        let Some(bad) = self
            .s
            .bad
            .iter()
            .find(|(o, _)| *o == offset)
            .map(|(_, b)| *b)
        else {
            return false;
        };
        let Some(n) = usize::try_from(offset)
            .ok()
            .and_then(|i| self.attempts.get_mut(i))
        else {
            return false;
        };
        *n += 1;
        match bad {
            Bad::Permanent => true,
            Bad::Transient(times) => *n <= times,
        }
    }

    fn step_member(&mut self) {
        let t = self.t;
        let Some(m) = self.member.as_mut() else {
            return;
        };
        if let Some(h) = m.hung_until {
            if t >= h {
                // max.poll.interval exceeded: the client leaves, another member resumes.
                let conn = m.conn;
                self.member = None;
                self.det.member_left(GROUP, &[conn], self.now());
                self.out.restarts += 1;
                self.start_member();
                return;
            }
            if matches!(
                self.s.on_poison,
                OnPoison::Hang {
                    keeps_fetching: true
                }
            ) {
                self.maybe_fetch();
            }
            return;
        }
        // Finish the record in process.
        if let Some((offset, done)) = m.current {
            if t < done {
                self.maybe_fetch();
                self.maybe_interval_commit();
                return;
            }
            if self.is_failing(offset) {
                self.fail(offset);
                return;
            }
            let Some(m) = self.member.as_mut() else {
                return;
            };
            m.current = None;
            m.since_commit += 1;
            if let Some(p) = usize::try_from(offset)
                .ok()
                .and_then(|i| self.out.processed.get_mut(i))
            {
                *p = true;
            }
            let pos = m.app_pos();
            let commit_now = match self.s.commit {
                CommitPolicy::PerRecord => true,
                CommitPolicy::EveryN(n) => m.since_commit >= n,
                CommitPolicy::IntervalMs(_) => false,
            };
            if commit_now {
                m.since_commit = 0;
                self.commit(pos);
            }
        }
        let Some(m) = self.member.as_mut() else {
            return;
        };
        if m.current.is_none() {
            if let Some(offset) = m.buffer.pop_front() {
                m.current = Some((offset, t + self.s.proc_ms));
            }
        }
        self.maybe_fetch();
        self.maybe_interval_commit();
    }

    fn maybe_interval_commit(&mut self) {
        let t = self.t;
        let Some(m) = self.member.as_mut() else {
            return;
        };
        if m.hung_until.is_some() || t < m.next_commit_at {
            return;
        }
        if let CommitPolicy::IntervalMs(ms) = self.s.commit {
            m.next_commit_at = t + ms;
            let pos = m.app_pos();
            if self.committed != Some(pos) {
                self.commit(pos);
            }
        }
    }

    fn maybe_fetch(&mut self) {
        let t = self.t;
        let s = self.s;
        let Some(m) = self.member.as_mut() else {
            return;
        };
        if t < m.next_fetch_at || m.buffer.len() >= s.prefetch {
            return;
        }
        let from = m.fetch_pos;
        let conn = m.conn;
        let end = (from + s.fetch_records).min(self.log_end);
        if from >= self.log_end
            && m.current.is_none()
            && m.buffer.is_empty()
            && !matches!(s.commit, CommitPolicy::IntervalMs(_))
        {
            // Caught up: commit the tail when idle (the last records may have been
            // hidden, so no record processing will trigger the commit).
            let pos = m.app_pos();
            m.since_commit = 0;
            if self.committed != Some(pos) {
                self.commit(pos);
            }
        }
        if from >= end || self.rng.chance(s.empty_fetch_pct) {
            // Long poll at the log end, or max_bytes too small: no records.
            let _ = self.det.delivery(
                &s.cfg,
                &self.key,
                from,
                None,
                conn,
                self.base + Duration::from_millis(t),
            );
            if let Some(m) = self.member.as_mut() {
                m.next_fetch_at = t + if from >= end { LONG_POLL_MS } else { 10 };
            }
            return;
        }
        let records: Vec<i64> = (from..end).filter(|o| !self.hidden.contains(o)).collect();
        let visible = match (records.first(), records.last()) {
            (Some(&first), Some(&last)) => Some(Visible { first, last }),
            _ => None,
        };
        let now = self.base + Duration::from_millis(t);
        let decision = self
            .det
            .delivery(&s.cfg, &self.key, from, visible, conn, now);
        if s.trace {
            let st = self.det.state(&self.key).and_then(|st| st.isolation);
            eprintln!(
                "t={t} {conn:?} fetch {from} {visible:?} -> {:?} {:?} iso={st:?}",
                decision.action,
                decision.poison.as_ref().map(|p| p.offset)
            );
        }
        if let Some(p) = &decision.poison {
            self.emit(p.offset, p.reason);
        }
        self.drain_decided();
        let Some(m) = self.member.as_mut() else {
            return;
        };
        let got = match decision.action {
            Action::Pass => {
                m.buffer.extend(records.iter().copied());
                m.fetch_pos = end;
                !records.is_empty()
            }
            Action::Trim { last_offset } => {
                let Some(v) = visible else {
                    self.out.errors.push(format!("t={t}: Trim without records"));
                    return;
                };
                if last_offset < v.first || last_offset > v.last {
                    self.out
                        .errors
                        .push(format!("t={t}: Trim to {last_offset} outside {v:?}"));
                }
                m.buffer
                    .extend(records.iter().copied().filter(|o| *o <= last_offset));
                m.fetch_pos = last_offset + 1;
                true
            }
            Action::Withhold => false,
        };
        if got {
            if let Some(f) = self.last_failure_at.take() {
                self.out.max_redelivery_wait_ms = self.out.max_redelivery_wait_ms.max(t - f);
            }
        }
        m.next_fetch_at = if got {
            t
        } else if matches!(decision.action, Action::Withhold) {
            t + WITHHELD_WAIT_MS
        } else {
            t + 10
        };
    }
}
