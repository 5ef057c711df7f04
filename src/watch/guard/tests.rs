//! The guard as a pure function over the events the watch layer feeds it: poison decisions
//! and commits, in the orders a broken deploy and genuine poison records produce them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;

const G: &str = "orders";
const T: &str = "order.confirmed";

/// Feeds a guard and remembers which offsets it let through (hidden from the group).
struct Run {
    guard: Guard,
    cfg: GuardConfig,
    t0: Instant,
    secs: u64,
    hidden: BTreeSet<(String, i32, i64)>,
    trips: Vec<Trip>,
    rearms: Vec<Rearmed>,
}

impl Run {
    fn new(cfg: GuardConfig) -> Self {
        Run {
            guard: Guard::default(),
            cfg,
            t0: Instant::now(),
            secs: 0,
            hidden: BTreeSet::new(),
            trips: Vec::new(),
            rearms: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_secs(self.secs)
    }

    fn wait(&mut self, secs: u64) {
        self.secs += secs;
    }

    /// The detector names `topic`-`partition`@`offset` poison; true when diverted.
    fn poison_in(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let d = Diversion {
            topic: topic.into(),
            partition,
            offset,
            reason: "crash-loop".into(),
            at_ms: 1_000 * self.secs as i64,
        };
        match self.guard.poison(&self.cfg, G, d, self.now()) {
            Verdict::Allow => {
                self.hidden.insert((topic.into(), partition, offset));
                true
            }
            Verdict::Refuse { tripped } => {
                self.trips.extend(tripped);
                false
            }
        }
    }

    fn poison(&mut self, partition: i32, offset: i64) -> bool {
        self.poison_in(T, partition, offset)
    }

    fn commit_in(&mut self, topic: &str, partition: i32, offset: i64) {
        let hidden = &self.hidden;
        let between = |from: i64, to: i64| {
            (from..to)
                .filter(|o| hidden.contains(&(topic.to_string(), partition, *o)))
                .count() as u64
        };
        let now = self.now();
        let key = PartitionKey::new(G, topic, partition);
        self.rearms
            .extend(self.guard.commit(&self.cfg, &key, offset, now, between));
    }

    fn commit(&mut self, partition: i32, offset: i64) {
        self.commit_in(T, partition, offset);
    }

    fn diverted(&self) -> usize {
        self.hidden.len()
    }
}

#[test]
fn broken_deploy_crash_loop_over_four_partitions_stops_at_three() {
    let mut r = Run::new(GuardConfig::default());
    // The application joins, reads its commits, and dies on the first record of every
    // partition; the detector names each one in turn (or all at once).
    for p in 0..4 {
        r.commit(p, 100);
    }
    let mut allowed = Vec::new();
    for p in 0..4 {
        r.wait(5);
        allowed.push(r.poison(p, 100));
    }
    assert_eq!(allowed, vec![true, true, true, false]);
    assert!(r.guard.is_tripped(G));
    let trip = &r.trips[0];
    assert_eq!(trip.signal, Signal::Consecutive);
    assert_eq!(trip.diverted_before.len(), 3);
    assert_eq!(trip.refused.get(&(T.to_string(), 3)), Some(&100));
    // The broken application goes on failing: the records after the diverted ones fail
    // too, and nothing more is diverted.
    for p in 0..4 {
        r.commit(p, 101); // past the hidden record only: not healthy
        r.wait(5);
        assert!(!r.poison(p, 101));
    }
    assert_eq!(r.diverted(), 3);
    let status = r.guard.status();
    assert_eq!(status.len(), 1);
    assert!(status[0].tripped);
    assert_eq!((status[0].trips, status[0].refused), (1, 5));
}

#[test]
fn broken_deploy_seek_back_in_one_partition_stops_at_three() {
    let mut r = Run::new(GuardConfig::default());
    r.commit(0, 0);
    // In-process retry: each record fails, is diverted, and the commit moves past it
    // (over the hidden record only) before the next one fails.
    let mut diverted = 0;
    for o in 0..50 {
        if !r.poison(0, o) {
            break;
        }
        diverted += 1;
        r.commit(0, o + 1);
        r.wait(1);
    }
    assert_eq!(diverted, 3);
    assert_eq!(r.trips.len(), 1);
    assert_eq!(r.trips[0].refused.get(&(T.to_string(), 0)), Some(&3));
}

#[test]
fn three_genuine_poison_records_found_together_are_all_diverted() {
    let mut r = Run::new(GuardConfig::default());
    for p in 0..4 {
        r.commit(p, 0);
    }
    // Healthy records before the poison were processed.
    r.commit(0, 137);
    r.commit(1, 12);
    r.commit(2, 403);
    // The searches run side by side and name all three within a second.
    assert!(r.poison(0, 137));
    assert!(r.poison(1, 12));
    assert!(r.poison(2, 403));
    assert!(!r.guard.is_tripped(G));
    // The group moves on past them and processes the rest.
    r.wait(2);
    r.commit(0, 500);
    r.commit(1, 500);
    r.commit(2, 500);
    assert_eq!(r.guard.status()[0].streak, 0);
    // Another genuine poison record later is diverted too.
    r.wait(30);
    assert!(r.poison(3, 250));
    assert_eq!(r.diverted(), 4);
    assert!(r.trips.is_empty());
}

#[test]
fn genuine_poison_one_by_one_with_progress_between_is_never_refused() {
    let mut r = Run::new(GuardConfig::default());
    r.commit(0, 0);
    let mut at = 0;
    for _ in 0..20 {
        at += 100;
        r.commit(0, at);
        r.wait(3);
        assert!(r.poison(0, at));
        r.commit(0, at + 1); // past the hidden record: not progress by itself
    }
    assert_eq!(r.diverted(), 20);
    assert!(r.trips.is_empty());
}

#[test]
fn half_of_the_records_failing_trips_on_the_ratio() {
    let mut r = Run::new(GuardConfig::default());
    r.commit(0, 0);
    // Every other record fails: the streak never grows past 1, the ratio is 1/2.
    let mut got = Vec::new();
    for i in 0..10 {
        let o = 2 * i;
        let ok = r.poison(0, o);
        got.push(ok);
        if !ok {
            break;
        }
        r.commit(0, o + 2); // the diverted record and the healthy one after it
        r.wait(1);
    }
    assert_eq!(got, vec![true, true, true, false]);
    assert_eq!(r.trips[0].signal, Signal::Ratio);
    assert_eq!(r.trips[0].window_diversions, 3);
    assert_eq!(r.trips[0].window_processed, 3);
}

#[test]
fn the_ratio_forgets_diversions_older_than_the_window() {
    let mut r = Run::new(GuardConfig::default());
    r.commit(0, 0);
    for i in 0..12 {
        let o = 2 * i;
        assert!(r.poison(0, o), "diversion {i} refused");
        r.commit(0, o + 2);
        r.wait(200); // at most two diversions within any 5 minutes
    }
    assert!(r.trips.is_empty());
}

#[test]
fn one_broken_topic_trips_although_another_topic_keeps_committing() {
    let mut r = Run::new(GuardConfig::default());
    r.commit_in("payments", 0, 0);
    r.commit(0, 0);
    let mut diverted = 0;
    for i in 0..10 {
        r.commit_in("payments", 0, 100 * (i + 1));
        if !r.poison(0, i) {
            break;
        }
        diverted += 1;
        r.commit(0, i + 1);
        r.wait(1);
    }
    assert_eq!(diverted, 3);
    assert!(r.guard.is_tripped(G));
}

#[test]
fn rearms_when_the_group_commits_past_the_refused_records() {
    let mut r = Run::new(GuardConfig::default());
    for p in 0..4 {
        r.commit(p, 10);
        r.poison(p, 10);
    }
    assert!(r.guard.is_tripped(G));
    // Commits past hidden records, or on other partitions, prove nothing.
    r.commit(0, 11);
    r.commit(1, 11);
    assert!(r.guard.is_tripped(G));
    // The rollback: the healthy application processes the refused record and more.
    r.commit(3, 11);
    assert!(!r.guard.is_tripped(G));
    assert_eq!(r.rearms.len(), 1);
    assert_eq!(r.rearms[0].why, Rearm::Progress);
    assert_eq!(r.rearms[0].trip.diverted_before.len(), 3);
    // Armed again, with a fresh streak: a genuine poison record is diverted.
    r.wait(60);
    assert!(r.poison(2, 40));
}

#[test]
fn rearms_only_when_every_refused_partition_moved() {
    let mut r = Run::new(GuardConfig::default());
    for p in 0..3 {
        r.commit(p, 0);
        assert!(r.poison(p, 0));
    }
    r.commit(3, 0);
    r.commit(4, 0);
    assert!(!r.poison(3, 0));
    assert!(!r.poison(4, 0));
    r.commit(3, 5);
    assert!(r.guard.is_tripped(G));
    r.commit(4, 5);
    assert!(!r.guard.is_tripped(G));
}

#[test]
fn rearms_by_hand() {
    let mut r = Run::new(GuardConfig::default());
    for p in 0..4 {
        r.poison(p, 0);
    }
    assert!(r.guard.is_tripped(G));
    let rearmed = r.guard.rearm(G).expect("was tripped");
    assert_eq!(rearmed.why, Rearm::Manual);
    assert!(!r.guard.is_tripped(G));
    assert!(r.guard.rearm(G).is_none(), "nothing to re-arm twice");
    assert!(r.guard.rearm("nobody").is_none());
    // Still broken: three more, then it trips again.
    let got: Vec<bool> = (0..4).map(|p| r.poison(p, 1)).collect();
    assert_eq!(got, vec![true, true, true, false]);
    assert_eq!(r.guard.status()[0].trips, 2);
}

#[test]
fn a_retried_decision_is_counted_once() {
    let mut r = Run::new(GuardConfig::default());
    for _ in 0..5 {
        assert!(r.poison(0, 7)); // the dead-letter write failed and is tried again
    }
    assert!(r.poison(1, 7));
    assert!(r.poison(2, 7));
    assert!(!r.poison(3, 7));
}

#[test]
fn groups_are_guarded_apart() {
    let mut r = Run::new(GuardConfig::default());
    for p in 0..4 {
        r.poison(p, 0);
    }
    assert!(r.guard.is_tripped(G));
    let d = Diversion {
        topic: T.into(),
        partition: 0,
        offset: 0,
        reason: "seek-back".into(),
        at_ms: 0,
    };
    assert_eq!(
        r.guard.poison(&r.cfg, "billing", d, r.now()),
        Verdict::Allow
    );
    assert!(!r.guard.is_tripped("billing"));
}

#[test]
fn disabled_guard_diverts_everything() {
    let mut r = Run::new(GuardConfig {
        enabled: false,
        ..Default::default()
    });
    for o in 0..100 {
        assert!(r.poison(0, o));
    }
    assert!(!r.guard.is_tripped(G));
}

#[test]
fn max_consecutive_is_configurable() {
    let mut r = Run::new(GuardConfig {
        max_consecutive: 1,
        ..Default::default()
    });
    assert!(r.poison(0, 0));
    assert!(!r.poison(1, 0));
}

#[test]
fn config_reads_durations_and_validation_names_the_key() {
    let cfg: GuardConfig = serde_norway::from_str("{}").unwrap();
    assert_eq!(cfg, GuardConfig::default());
    let cfg: GuardConfig =
        serde_norway::from_str("{max_consecutive: 5, window: 10m, max_ratio: 0.2}").unwrap();
    assert_eq!(cfg.max_consecutive, 5);
    assert_eq!(cfg.window, Duration::from_secs(600));
    let cfg: GuardConfig = serde_norway::from_str("{window: 1500}").unwrap();
    assert_eq!(cfg.window, Duration::from_millis(1500));
    assert!(serde_norway::from_str::<GuardConfig>("{window: soon}").is_err());
    assert!(serde_norway::from_str::<GuardConfig>("{max_consecutve: 2}").is_err());
    let bad = |c: GuardConfig| c.validate().unwrap_err().key;
    assert_eq!(
        bad(GuardConfig {
            max_consecutive: 0,
            ..Default::default()
        }),
        "max_consecutive"
    );
    assert_eq!(
        bad(GuardConfig {
            max_ratio: 0.0,
            ..Default::default()
        }),
        "max_ratio"
    );
    assert_eq!(
        bad(GuardConfig {
            max_ratio: 1.5,
            ..Default::default()
        }),
        "max_ratio"
    );
    assert_eq!(
        bad(GuardConfig {
            window: Duration::ZERO,
            ..Default::default()
        }),
        "window"
    );
    assert!(GuardConfig::default().validate().is_ok());
}

#[test]
fn diversions_of_other_sidecars_share_the_budget() {
    let mut r = Run::new(GuardConfig::default());
    for p in 0..4 {
        r.commit(p, 0);
    }
    // Two replicas' sidecars diverted one record each (read from the state topic) ...
    for p in 0..2 {
        let d = Diversion {
            topic: T.into(),
            partition: p,
            offset: 0,
            reason: "crash-loop".into(),
            at_ms: 0,
        };
        r.guard.shared(&r.cfg, G, d.clone(), r.now());
        r.guard.shared(&r.cfg, G, d, r.now()); // read twice: counted once
    }
    assert!(
        !r.guard.is_tripped(G),
        "others' diversions never trip by themselves"
    );
    // ... so this sidecar may divert one more, and refuses the next.
    assert!(r.poison(2, 0));
    assert!(!r.poison(3, 0));
    assert_eq!(r.trips[0].diverted_before.len(), 3);
    // Its own application's healthy progress resets the shared streak too.
    let mut r = Run::new(GuardConfig::default());
    r.commit(0, 0);
    for o in 0..3 {
        let d = Diversion {
            topic: T.into(),
            partition: 1,
            offset: o,
            reason: "seek-back".into(),
            at_ms: 0,
        };
        r.guard.shared(&r.cfg, G, d, r.now());
    }
    r.commit(0, 1000);
    assert!(r.poison(0, 1000));
}
