//! A deterministic simulated consumer group: several partitions, several members, each
//! member behind its own sidecar (its own [`Detector`]), sidecars sharing their searches
//! through a simulated state topic with a delay. It tests the detector in the shapes
//! production has: several poison records at once, one sidecar per replica, crash loops
//! that move partitions between pods.
//!
//! The application is librdkafka-like: it fetches every assigned partition into one
//! queue, takes up to `batch` records at a time, processes them in order, commits the
//! batch's positions when the whole batch is done, and crashes on a bad record (all its
//! connections close; it is restarted after `restart_ms`). The group coordinator is
//! eager: a crashed member keeps its partitions until `session_timeout_ms` expires; every
//! join or expiry re-assigns all partitions round-robin and every member starts again
//! from the commits.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::sim::Rng;
use crate::detect::{
    Action, ConnId, DetectConfig, Detector, DetectorLimits, PartitionKey, Search, Visible,
};

const GROUP: &str = "sim-fleet";
const TOPIC: &str = "orders";
const STEP_MS: u64 = 5;
const TICK_MS: u64 = 250;
const DLQ_MS: u64 = 30;
const FETCH_WAIT_MS: u64 = 50;
const JOIN_MS: u64 = 300;

/// How the application commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupCommit {
    /// After every record.
    PerRecord,
    /// After each batch it took from the queue.
    PerBatch,
}

/// One simulated fleet run's shape.
#[derive(Debug, Clone)]
pub(crate) struct GroupScenario {
    pub partitions: i32,
    pub per_partition: i64,
    /// (partition, offset) of records the application can never process.
    pub bad: Vec<(i32, i64)>,
    /// Records that fail this many times, then succeed.
    pub flaky: Vec<(i32, i64, u32)>,
    /// Replicas of the application.
    pub members: usize,
    /// Each replica has its own sidecar (else they share one).
    pub sidecar_per_member: bool,
    pub batch: usize,
    pub commit: GroupCommit,
    pub fetch_records: i64,
    pub proc_ms: u64,
    pub restart_ms: u64,
    pub session_timeout_ms: u64,
    /// How long a search state takes to reach the other sidecars.
    pub share_delay_ms: u64,
    /// This sidecar (index) is killed at this time and comes back empty after 2 s; its
    /// member's connections close with it.
    pub kill_sidecar: Option<(usize, u64)>,
    pub cfg: DetectConfig,
    pub time_limit_ms: u64,
    pub seed: u64,
}

impl Default for GroupScenario {
    fn default() -> Self {
        GroupScenario {
            partitions: 4,
            per_partition: 500,
            bad: Vec::new(),
            flaky: Vec::new(),
            members: 1,
            sidecar_per_member: true,
            batch: 10,
            commit: GroupCommit::PerBatch,
            fetch_records: 500,
            proc_ms: 1,
            restart_ms: 1000,
            session_timeout_ms: 6000,
            share_delay_ms: 300,
            kill_sidecar: None,
            cfg: DetectConfig::default(),
            time_limit_ms: 3_600_000,
            seed: 1,
        }
    }
}

/// What happened in one fleet run.
#[derive(Debug, Default)]
pub(crate) struct GroupOutcome {
    pub finished: bool,
    pub sim_ms: u64,
    /// Crash-restarts of application processes.
    pub crashes: u32,
    /// Records written to the simulated DLQ (and hidden).
    pub diverted: BTreeSet<(i32, i64)>,
    /// Records the application processed at least once.
    pub processed: BTreeSet<(i32, i64)>,
    /// Per bad record: crashes while it was out (delivered, not committed) until it was
    /// diverted.
    pub failures_of: BTreeMap<(i32, i64), u32>,
    /// Per bad record: when it was diverted (ms).
    pub diverted_at: BTreeMap<(i32, i64), u64>,
    /// Longest time a partition with no bad record had records to give and its commit
    /// did not move (ms).
    pub max_healthy_hold_ms: u64,
    /// Same DLQ record written twice.
    pub duplicate_writes: u32,
    pub committed: BTreeMap<i32, i64>,
}

struct Member {
    up: bool,
    down_until: u64,
    conn: ConnId,
    sidecar: usize,
    assigned: Vec<i32>,
    pos: HashMap<i32, i64>,
    queue: VecDeque<(i32, i64)>,
    busy_until: u64,
    next_fetch_at: u64,
}

struct Sidecar {
    det: Detector,
    name: String,
    /// (deliver at, from instance, key, search)
    inbox: Vec<(u64, String, PartitionKey, Search)>,
    down_until: Option<u64>,
}

struct Fleet<'a> {
    s: &'a GroupScenario,
    base: Instant,
    t: u64,
    rng: Rng,
    members: Vec<Member>,
    sidecars: Vec<Sidecar>,
    committed: BTreeMap<i32, i64>,
    hidden: BTreeSet<(i32, i64)>,
    attempts: HashMap<(i32, i64), u32>,
    /// (done at, sidecar, key, offset)
    dlq: Vec<(u64, usize, PartitionKey, i64)>,
    rebalance_at: Option<u64>,
    /// Every search state shared, in order: what a restarted sidecar reads.
    state_topic: Vec<(String, PartitionKey, Search)>,
    /// Sessions of crashed members, until they expire.
    dead_sessions: Vec<u64>,
    next_conn: u64,
    last_progress: BTreeMap<i32, u64>,
    out: GroupOutcome,
}

/// Runs a fleet scenario until every record is committed or diverted, or the time limit.
pub(crate) fn run_group(s: &GroupScenario) -> GroupOutcome {
    let sidecars = if s.sidecar_per_member { s.members } else { 1 };
    let mut f = Fleet {
        s,
        base: Instant::now(),
        t: 0,
        rng: Rng::new(s.seed),
        members: Vec::new(),
        sidecars: (0..sidecars)
            .map(|i| Sidecar {
                det: Detector::new(DetectorLimits::default()),
                name: format!("pod-{i}"),
                inbox: Vec::new(),
                down_until: None,
            })
            .collect(),
        committed: (0..s.partitions).map(|p| (p, 0)).collect(),
        hidden: BTreeSet::new(),
        attempts: HashMap::new(),
        dlq: Vec::new(),
        rebalance_at: Some(JOIN_MS),
        state_topic: Vec::new(),
        dead_sessions: Vec::new(),
        next_conn: 1,
        last_progress: (0..s.partitions).map(|p| (p, 0)).collect(),
        out: GroupOutcome::default(),
    };
    for i in 0..s.members {
        let conn = f.conn();
        f.members.push(Member {
            up: true,
            down_until: 0,
            conn,
            sidecar: if s.sidecar_per_member { i } else { 0 },
            assigned: Vec::new(),
            pos: HashMap::new(),
            queue: VecDeque::new(),
            busy_until: 0,
            next_fetch_at: u64::MAX,
        });
    }
    f.run();
    f.out.committed = f.committed.clone();
    f.out.sim_ms = f.t;
    f.out
}

impl Fleet<'_> {
    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.t)
    }

    fn key(p: i32) -> PartitionKey {
        PartitionKey::new(GROUP, TOPIC, p)
    }

    /// Every partition committed to its end, or to a point past which every record is
    /// diverted (an application that commits per record has nothing left to commit).
    fn done(&self) -> bool {
        self.dlq.is_empty()
            && self
                .committed
                .iter()
                .all(|(p, c)| (*c..self.s.per_partition).all(|o| self.hidden.contains(&(*p, o))))
    }

    fn run(&mut self) {
        let mut next_tick = TICK_MS;
        while self.t <= self.s.time_limit_ms {
            if self.done() {
                self.out.finished = true;
                break;
            }
            self.deliver_shared();
            if self.t >= next_tick {
                self.tick();
                next_tick += TICK_MS;
            }
            self.complete_dlq();
            self.sidecar_kill();
            self.restarts();
            if self.rebalance_at.is_some_and(|r| self.t >= r) {
                self.rebalance();
            }
            for m in 0..self.members.len() {
                self.step_member(m);
            }
            self.watch_healthy();
            self.t += STEP_MS;
        }
    }

    fn watch_healthy(&mut self) {
        for p in 0..self.s.partitions {
            let c = self.committed[&p];
            let healthy = !self.s.bad.iter().any(|(bp, _)| *bp == p);
            if c >= self.s.per_partition || !healthy {
                self.last_progress.insert(p, self.t);
                continue;
            }
            let held = self.t.saturating_sub(self.last_progress[&p]);
            self.out.max_healthy_hold_ms = self.out.max_healthy_hold_ms.max(held);
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        let t = self.t;
        for i in 0..self.sidecars.len() {
            if self.sidecars[i].down_until.is_some() {
                continue;
            }
            let reports = self.sidecars[i].det.tick(now);
            if std::env::var("SIM_TRACE").is_ok() {
                for r in reports {
                    eprintln!(
                        "t={t} {} p{} {}",
                        self.sidecars[i].name, r.key.partition, r.event
                    );
                }
            }
            for (key, p) in self.sidecars[i].det.take_decided() {
                self.start_dlq(i, key, p.offset);
            }
            let name = self.sidecars[i].name.clone();
            let changed = self.sidecars[i].det.take_changed_searches();
            for (key, search) in changed {
                self.state_topic
                    .push((name.clone(), key.clone(), search.clone()));
                // Every sidecar tails the state topic, this one too.
                for other in self.sidecars.iter_mut() {
                    other.inbox.push((
                        t + self.s.share_delay_ms,
                        name.clone(),
                        key.clone(),
                        search.clone(),
                    ));
                }
            }
        }
    }

    fn deliver_shared(&mut self) {
        let now = self.now();
        let t = self.t;
        for sc in self.sidecars.iter_mut() {
            if sc.down_until.is_some() {
                continue;
            }
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut sc.inbox)
                .into_iter()
                .partition(|m| m.0 <= t);
            sc.inbox = later;
            for (_, from, key, search) in due {
                sc.det.adopt(&key, &search, &from, &sc.name, now);
            }
        }
    }

    fn start_dlq(&mut self, sidecar: usize, key: PartitionKey, offset: i64) {
        let at = (key.partition, offset);
        if self.hidden.contains(&at) {
            self.out.duplicate_writes += 1;
            return;
        }
        if self.dlq.iter().any(|d| d.2 == key && d.3 == offset) {
            return;
        }
        self.dlq.push((self.t + DLQ_MS, sidecar, key, offset));
    }

    fn complete_dlq(&mut self) {
        let t = self.t;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dlq)
            .into_iter()
            .partition(|d| d.0 <= t);
        self.dlq = later;
        for (_, sidecar, key, offset) in due {
            let at = (key.partition, offset);
            if !self.hidden.insert(at) {
                self.out.duplicate_writes += 1;
            }
            self.out.diverted.insert(at);
            self.out.diverted_at.entry(at).or_insert(t);
            if self.sidecars[sidecar].down_until.is_none() {
                self.sidecars[sidecar].det.diverted(&key, offset);
            }
        }
    }

    fn sidecar_kill(&mut self) {
        let Some((i, at)) = self.s.kill_sidecar else {
            return;
        };
        if self.t == at - at % STEP_MS {
            // The pod's sidecar dies: its application loses its connections too.
            self.sidecars[i].down_until = Some(self.t + 2000);
            self.sidecars[i].inbox.clear();
            for m in 0..self.members.len() {
                if self.members[m].sidecar == i && self.members[m].up {
                    self.crash(m, false);
                }
            }
        }
        if self.sidecars[i].down_until.is_some_and(|d| self.t >= d) {
            // Back, empty: it reads the whole state topic again.
            let mut det = Detector::new(DetectorLimits::default());
            let now = self.now();
            let name = self.sidecars[i].name.clone();
            for (from, key, search) in &self.state_topic {
                det.adopt(key, search, from, &name, now);
            }
            self.sidecars[i].det = det;
            self.sidecars[i].down_until = None;
        }
    }

    fn crash(&mut self, m: usize, count: bool) {
        let now = self.now();
        let member = &mut self.members[m];
        member.up = false;
        member.down_until = self.t + self.s.restart_ms + self.rng.below(self.s.restart_ms / 4 + 1);
        member.queue.clear();
        let conn = member.conn;
        let sc = member.sidecar;
        if count {
            self.out.crashes += 1;
        }
        if self.sidecars[sc].down_until.is_none() {
            self.sidecars[sc].det.member_lost(GROUP, conn, now);
        }
        self.dead_sessions.push(self.t + self.s.session_timeout_ms);
        let expiry = self.t + self.s.session_timeout_ms;
        self.rebalance_at = Some(self.rebalance_at.map_or(expiry, |r| r.max(expiry)));
    }

    fn restarts(&mut self) {
        for m in 0..self.members.len() {
            if !self.members[m].up && self.t >= self.members[m].down_until {
                let conn = self.conn();
                let member = &mut self.members[m];
                member.up = true;
                member.conn = conn;
                member.assigned.clear();
                member.next_fetch_at = u64::MAX;
                // JoinGroup: the group rebalances once every dead session expired.
                let expiry = self.dead_sessions.iter().copied().max().unwrap_or(0);
                let when = (self.t + JOIN_MS).max(expiry);
                self.rebalance_at = Some(self.rebalance_at.map_or(when, |r| r.max(when)));
            }
        }
    }

    fn rebalance(&mut self) {
        self.rebalance_at = None;
        self.dead_sessions.retain(|e| *e > self.t);
        let now = self.now();
        let up: Vec<usize> = (0..self.members.len())
            .filter(|m| self.members[*m].up)
            .collect();
        for sc in self.sidecars.iter_mut() {
            if sc.down_until.is_none() {
                sc.det.rebalance(GROUP, now);
            }
        }
        for m in &up {
            let member = &mut self.members[*m];
            member.assigned.clear();
            member.queue.clear();
            member.pos.clear();
        }
        if up.is_empty() {
            return;
        }
        for p in 0..self.s.partitions {
            let m = up[usize::try_from(p).unwrap_or(0) % up.len()];
            let c = self.committed[&p];
            let member = &mut self.members[m];
            member.assigned.push(p);
            member.pos.insert(p, c);
            member.next_fetch_at = self.t;
            let sc = member.sidecar;
            if self.sidecars[sc].down_until.is_none() {
                // OffsetFetch on assignment tells the sidecar where the member resumes.
                self.sidecars[sc].det.commit(&Self::key(p), c, now);
            }
        }
    }

    fn commit(&mut self, m: usize, p: i32, offset: i64) {
        if self.committed[&p] >= offset {
            return;
        }
        self.committed.insert(p, offset);
        self.last_progress.insert(p, self.t);
        let sc = self.members[m].sidecar;
        let now = self.now();
        if self.sidecars[sc].down_until.is_none() {
            self.sidecars[sc].det.commit(&Self::key(p), offset, now);
        }
    }

    fn fails(&mut self, at: (i32, i64)) -> bool {
        if self.s.bad.contains(&at) {
            return true;
        }
        if let Some((_, _, times)) = self.s.flaky.iter().find(|(p, o, _)| (*p, *o) == at) {
            let n = self.attempts.entry(at).or_insert(0);
            *n += 1;
            return *n <= *times;
        }
        false
    }

    fn step_member(&mut self, m: usize) {
        if !self.members[m].up || self.t < self.members[m].busy_until {
            return;
        }
        if self.members[m].queue.is_empty() {
            if self.t >= self.members[m].next_fetch_at {
                self.fetch(m);
            }
            return;
        }
        // Take a batch and process it in order.
        let n = self.s.batch.max(1).min(self.members[m].queue.len());
        let batch: Vec<(i32, i64)> = self.members[m].queue.drain(..n).collect();
        let mut done: BTreeMap<i32, i64> = BTreeMap::new();
        for (i, at) in batch.iter().enumerate() {
            if self.fails(*at) {
                // Every bad record still out is charged with this crash.
                let out: Vec<(i32, i64)> = batch[i..]
                    .iter()
                    .chain(self.members[m].queue.iter())
                    .copied()
                    .filter(|r| self.s.bad.contains(r))
                    .collect();
                for r in out {
                    *self.out.failures_of.entry(r).or_insert(0) += 1;
                }
                self.members[m].busy_until = self.t + self.s.proc_ms * (i as u64 + 1);
                if std::env::var("SIM_TRACE").is_ok() {
                    eprintln!(
                        "t={} CRASH member {m} on {at:?}; committed {:?}",
                        self.t, self.committed
                    );
                }
                self.crash(m, true);
                return;
            }
            self.out.processed.insert(*at);
            if self.s.commit == GroupCommit::PerRecord {
                self.commit(m, at.0, at.1 + 1);
            }
            done.insert(at.0, at.1 + 1);
        }
        for (p, o) in done {
            self.commit(m, p, o);
        }
        self.members[m].busy_until = self.t + self.s.proc_ms * n as u64;
    }

    fn fetch(&mut self, m: usize) {
        let now = self.now();
        let sc = self.members[m].sidecar;
        if self.sidecars[sc].down_until.is_some() {
            self.members[m].next_fetch_at = self.t + 100;
            return;
        }
        let conn = self.members[m].conn;
        let mut got = false;
        let mut withheld = false;
        let assigned = self.members[m].assigned.clone();
        for p in assigned {
            let from = self.members[m].pos[&p];
            let end = (from + self.s.fetch_records).min(self.s.per_partition);
            let key = Self::key(p);
            if from >= end {
                let _ = self.sidecars[sc]
                    .det
                    .delivery(&self.s.cfg, &key, from, None, conn, now);
                continue;
            }
            let records: Vec<i64> = (from..end)
                .filter(|o| !self.hidden.contains(&(p, *o)))
                .collect();
            let visible = match (records.first(), records.last()) {
                (Some(&first), Some(&last)) => Some(Visible { first, last }),
                _ => None,
            };
            let d = self.sidecars[sc]
                .det
                .delivery(&self.s.cfg, &key, from, visible, conn, now);
            if let Some(poison) = &d.poison {
                self.start_dlq(sc, key.clone(), poison.offset);
            }
            let decided = self.sidecars[sc].det.take_decided();
            for (k, poison) in decided {
                self.start_dlq(sc, k, poison.offset);
            }
            let member = &mut self.members[m];
            match d.action {
                Action::Pass => {
                    member.queue.extend(records.iter().map(|o| (p, *o)));
                    member.pos.insert(p, end);
                    got |= !records.is_empty();
                    if visible.is_none() {
                        member.pos.insert(p, end);
                    }
                }
                Action::Trim { last_offset } => {
                    member.queue.extend(
                        records
                            .iter()
                            .filter(|o| **o <= last_offset)
                            .map(|o| (p, *o)),
                    );
                    member.pos.insert(p, last_offset + 1);
                    got = true;
                }
                Action::Withhold => withheld = true,
            }
        }
        self.members[m].next_fetch_at = if got {
            self.t
        } else if withheld {
            self.t + 100
        } else {
            self.t + FETCH_WAIT_MS
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim_tests::median_max;
    use super::*;

    fn seeds() -> u64 {
        std::env::var("SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(12)
    }

    /// The invariants of every fleet run: it ends; every record is processed or in the
    /// DLQ; only bad records are in the DLQ, each once; every bad record is there.
    fn check(name: &str, s: &GroupScenario, o: &GroupOutcome) {
        let fail = |why: String| {
            panic!(
                "{name} seed {}: {why}\n{s:?}\ncrashes {} diverted {:?} failures {:?} at {:?}",
                s.seed, o.crashes, o.diverted, o.failures_of, o.diverted_at
            )
        };
        if !o.finished {
            fail(format!(
                "not finished after {} ms, committed {:?}",
                o.sim_ms, o.committed
            ));
        }
        let bad: BTreeSet<(i32, i64)> = s.bad.iter().copied().collect();
        if o.diverted != bad {
            fail(format!("diverted {:?}, bad {bad:?}", o.diverted));
        }
        if o.duplicate_writes > 0 {
            fail(format!("{} duplicate DLQ writes", o.duplicate_writes));
        }
        for p in 0..s.partitions {
            for off in 0..s.per_partition {
                let at = (p, off);
                if !o.processed.contains(&at) && !o.diverted.contains(&at) {
                    fail(format!("{at:?} neither processed nor diverted"));
                }
            }
        }
    }

    fn three_poison(seed: u64) -> GroupScenario {
        let mut rng = Rng::new(seed);
        let mut mid = |lo: i64| lo + 20 + i64::try_from(rng.below(80)).unwrap_or(0);
        GroupScenario {
            partitions: 4,
            per_partition: 500,
            bad: vec![(0, mid(100)), (1, mid(200)), (2, mid(300))],
            seed,
            ..Default::default()
        }
    }

    fn family(name: &str, make: impl Fn(u64) -> GroupScenario) -> Vec<GroupOutcome> {
        let mut outs = Vec::new();
        for seed in 0..seeds() {
            let s = make(seed);
            let o = run_group(&s);
            check(name, &s, &o);
            outs.push(o);
        }
        let crashes = median_max(outs.iter().map(|o| u64::from(o.crashes)).collect());
        let held = median_max(outs.iter().map(|o| o.max_healthy_hold_ms).collect());
        let per = median_max(
            outs.iter()
                .flat_map(|o| o.failures_of.values().map(|v| u64::from(*v)))
                .collect(),
        );
        eprintln!(
            "{name}: crashes median {} max {}; failures per poison median {} max {}; healthy held median {} ms max {} ms",
            crashes.0, crashes.1, per.0, per.1, held.0, held.1
        );
        outs
    }

    #[test]
    fn three_poison_records_in_one_crash_loop_are_all_diverted() {
        let outs = family("3 poison, 4 partitions, 1 sidecar", three_poison);
        for o in &outs {
            assert!(
                o.crashes <= 12,
                "{} crashes: {:?}",
                o.crashes,
                o.failures_of
            );
        }
    }

    #[test]
    fn a_fleet_of_three_sidecars_behaves_as_one() {
        let outs = family("3 poison, 6 partitions, 3 replicas, 3 sidecars", |seed| {
            GroupScenario {
                partitions: 6,
                per_partition: 300,
                members: 3,
                bad: vec![(0, 150), (2, 40), (4, 260)],
                ..three_poison(seed)
            }
        });
        for o in &outs {
            assert!(
                o.crashes <= 15,
                "{} crashes: {:?}",
                o.crashes,
                o.failures_of
            );
        }
    }

    #[test]
    fn a_sidecar_killed_mid_search_loses_nothing() {
        family("3 replicas, sidecar 1 killed at 20s", |seed| {
            GroupScenario {
                partitions: 6,
                per_partition: 300,
                members: 3,
                bad: vec![(0, 150), (1, 40), (4, 260)],
                kill_sidecar: Some((1, 20_000)),
                ..three_poison(seed)
            }
        });
    }

    #[test]
    fn per_record_commits_and_flaky_records() {
        family("per-record commits, 2 poison, 2 flaky", |seed| {
            GroupScenario {
                commit: GroupCommit::PerRecord,
                bad: vec![(0, 120), (3, 7)],
                flaky: vec![(1, 50, 2), (2, 300, 1)],
                ..three_poison(seed)
            }
        });
    }

    #[test]
    fn a_healthy_fleet_diverts_nothing() {
        family("healthy, 3 replicas", |seed| GroupScenario {
            members: 3,
            bad: Vec::new(),
            flaky: vec![(1, 50, 2)],
            ..three_poison(seed)
        });
    }

    #[test]
    fn random_fleets_keep_the_invariants() {
        family("random fleets", |seed| {
            let mut r = Rng::new(seed ^ 0xF1EE7);
            let partitions = 1 + i32::try_from(r.below(8)).unwrap_or(0);
            let per_partition = 50 + i64::try_from(r.below(400)).unwrap_or(0);
            let poison = r.below(4);
            let mut bad = BTreeSet::new();
            for _ in 0..poison {
                let p = i32::try_from(r.below(u64::try_from(partitions).unwrap_or(1))).unwrap_or(0);
                let o =
                    i64::try_from(r.below(u64::try_from(per_partition).unwrap_or(1))).unwrap_or(0);
                bad.insert((p, o));
            }
            let members = 1 + usize::try_from(r.below(3)).unwrap_or(0);
            GroupScenario {
                partitions,
                per_partition,
                bad: bad.into_iter().collect(),
                members,
                sidecar_per_member: r.chance(70),
                batch: 1 + usize::try_from(r.below(20)).unwrap_or(0),
                commit: if r.chance(50) {
                    GroupCommit::PerBatch
                } else {
                    GroupCommit::PerRecord
                },
                fetch_records: 10 + i64::try_from(r.below(500)).unwrap_or(0),
                restart_ms: 200 + r.below(3000),
                session_timeout_ms: 1000 + r.below(10_000),
                share_delay_ms: r.below(1500),
                seed,
                ..Default::default()
            }
        });
    }
}
