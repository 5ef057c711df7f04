//! Simulated consumers against the detector: the invariants over many seeds and shapes.
//!
//! Every family checks: the run finishes (the group commits the whole log), every offset
//! is either processed or diverted, exactly the permanent poison records are emitted and
//! diverted (no neighbour, no healthy record), and the simulated proxy could apply every
//! decision. Each family prints one summary line (run with `--nocapture` to see them).

use std::collections::BTreeSet;
use std::time::Duration;

use super::sim::{run, Bad, CommitPolicy, OnPoison, Outcome, Rng, Scenario};
use crate::detect::{DetectConfig, Event, Reason};

/// Seeds per family; `SIM_SEEDS=500 cargo test --lib detect::sim_tests` for a longer run.
fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// The invariants of one run; `Err` says which one broke.
fn invariants(s: &Scenario, o: &Outcome) -> Result<(), String> {
    if !o.errors.is_empty() {
        return Err(format!("proxy could not apply decisions: {:?}", o.errors));
    }
    if !o.finished {
        return Err(format!(
            "not finished after {} ms, committed {}",
            o.sim_ms, o.committed
        ));
    }
    let permanent: BTreeSet<i64> = s
        .bad
        .iter()
        .filter(|(_, b)| *b == Bad::Permanent)
        .map(|(o, _)| *o)
        .collect();
    if o.emitted != permanent {
        return Err(format!("emitted {:?}, poison {permanent:?}", o.emitted));
    }
    if o.diverted != permanent {
        return Err(format!("diverted {:?}, poison {permanent:?}", o.diverted));
    }
    for (i, p) in o.processed.iter().enumerate() {
        let off = i64::try_from(i).unwrap_or(i64::MAX);
        if !*p && !o.diverted.contains(&off) {
            return Err(format!("offset {off} lost"));
        }
    }
    Ok(())
}

fn check(name: &str, s: &Scenario, o: &Outcome) {
    if let Err(e) = invariants(s, o) {
        if std::env::var("SIM_COLLECT").is_ok() {
            eprintln!("BROKEN {name} seed {}: {e}", s.seed);
        } else {
            panic!("{name} seed {}: {e} (rerun with trace)", s.seed);
        }
    }
}

pub(crate) fn median_max(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    (
        v.get(v.len() / 2).copied().unwrap_or(0),
        v.last().copied().unwrap_or(0),
    )
}

/// Runs `SEEDS` seeds of a family, checks each, prints one summary line.
fn family(name: &str, make: impl Fn(u64) -> Scenario) -> Vec<Outcome> {
    let mut outs = Vec::new();
    let base: u64 = std::env::var("SIM_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in base..base + seeds() {
        let s = make(seed);
        let o = run(&s);
        check(name, &s, &o);
        outs.push(o);
    }
    let stat = |f: &dyn Fn(&Outcome) -> u64| median_max(outs.iter().map(f).collect());
    let (fail_med, fail_max) =
        stat(&|o| u64::from(o.failures_to_first_poison.unwrap_or(o.failures)));
    let (commits_med, commits_max) = stat(&|o| u64::from(o.commits));
    let (secs_med, secs_max) = stat(&|o| o.sim_ms / 1000);
    eprintln!(
        "SIM {name:<34} failures-to-poison med {fail_med:>2} max {fail_max:>2} | commits med {commits_med:>4} max {commits_max:>4} | sim time med {secs_med:>5}s max {secs_max:>5}s"
    );
    outs
}

/// A poison somewhere in the middle of the 500-record batch [500, 1000).
fn mid_batch(seed: u64) -> i64 {
    500 + i64::try_from(Rng::new(seed).below(500)).unwrap_or(0)
}

fn crash_loop(seed: u64) -> Scenario {
    Scenario {
        log_len: 3000,
        bad: vec![(mid_batch(seed), Bad::Permanent)],
        on_poison: OnPoison::Crash { leave: false },
        commit: CommitPolicy::IntervalMs(5000),
        fetch_records: 500,
        prefetch: 5000,
        seed,
        ..Default::default()
    }
}

/// The same consumer with nothing bad in the log.
fn healthy(seed: u64) -> Scenario {
    Scenario {
        bad: Vec::new(),
        ..crash_loop(seed)
    }
}

#[test]
fn crash_loop_with_big_prefetch_and_interval_commits_finds_the_exact_record() {
    let outs = family("crash, prefetch 5000, 5s commits", crash_loop);
    for o in &outs {
        assert!(
            o.emissions.iter().all(|(_, r)| *r == Reason::CrashLoop),
            "{:?}",
            o.emissions
        );
        // max_deliveries (3) failures to get suspect, then about log2(500) windows.
        assert!(o.failures_to_first_poison.unwrap_or(99) <= 2 + 12, "{o:?}");
    }
}

#[test]
fn restarts_to_find_a_poison_in_a_500_record_range_are_about_log2() {
    // One fetch returns the whole 500-record range; the consumer commits on a 5s interval
    // and crash-loops on a record anywhere in it.
    let outs = family("500-record range, crash, 5s commits", |seed| Scenario {
        log_len: 500,
        bad: vec![(
            i64::try_from(Rng::new(seed).below(500)).unwrap_or(0),
            Bad::Permanent,
        )],
        prefetch: 500,
        ..crash_loop(seed)
    });
    for o in &outs {
        // Two restarts make three deliveries; then at most one failing window per
        // halving of 500 records (log2 500 < 9), plus the probe.
        let restarts = o.failures_to_first_poison.unwrap_or(u32::MAX);
        assert!(restarts <= 2 + 9 + 1, "{restarts} restarts: {o:?}");
    }
}

#[test]
fn crash_loop_committing_per_record_is_found_by_the_first_probe() {
    let outs = family("crash, commit per record", |seed| Scenario {
        commit: CommitPolicy::PerRecord,
        ..crash_loop(seed)
    });
    for o in &outs {
        // Two failures make three deliveries; the probe of the re-delivered record fails once.
        assert_eq!(o.failures_to_first_poison, Some(3), "{o:?}");
    }
}

#[test]
fn crash_loop_with_a_clean_close_is_found() {
    family("crash with clean LeaveGroup", |seed| Scenario {
        on_poison: OnPoison::Crash { leave: true },
        ..crash_loop(seed)
    });
}

#[test]
fn consumer_committing_every_n_records_is_searched_by_quiet_windows() {
    let outs = family("crash, commit every 100 records", |seed| Scenario {
        commit: CommitPolicy::EveryN(100),
        ..crash_loop(seed)
    });
    assert!(outs.iter().any(|o| o
        .reports
        .iter()
        .any(|r| matches!(r.event, Event::WindowWidened { .. }))));
}

#[test]
fn seek_back_retries_in_process_are_found() {
    let outs = family("seek-back, commit per record", |seed| Scenario {
        on_poison: OnPoison::SeekBack,
        commit: CommitPolicy::PerRecord,
        ..crash_loop(seed)
    });
    for o in &outs {
        assert_eq!(o.restarts, 0);
        assert!(
            o.emissions.iter().all(|(_, r)| *r == Reason::SeekBack),
            "{:?}",
            o.emissions
        );
    }
    family("seek-back, 5s commits", |seed| Scenario {
        on_poison: OnPoison::SeekBack,
        ..crash_loop(seed)
    });
}

#[test]
fn hang_until_eviction_is_found() {
    let outs = family("hang (no fetch while hung), 5s commits", |seed| Scenario {
        on_poison: OnPoison::Hang {
            keeps_fetching: false,
        },
        ..crash_loop(seed)
    });
    for o in &outs {
        assert!(o
            .reports
            .iter()
            .any(|r| matches!(r.event, Event::StallStarted { .. })));
        assert!(
            o.emissions.iter().all(|(_, r)| *r == Reason::Stalled),
            "{:?}",
            o.emissions
        );
        // A stall counts double: one hang, one re-delivery, and the partition is isolated.
        assert!(o.reports.iter().any(|r| matches!(
            r.event,
            Event::IsolationStarted {
                deliveries: 3,
                reason: Reason::Stalled,
                ..
            }
        )));
    }
    family("hang (client keeps prefetching)", |seed| Scenario {
        on_poison: OnPoison::Hang {
            keeps_fetching: true,
        },
        ..crash_loop(seed)
    });
}

#[test]
fn two_poison_records_in_one_partition_are_both_found() {
    family("two poisons, crash, 5s commits", |seed| {
        let mut rng = Rng::new(seed + 1000);
        let a = i64::try_from(rng.below(3000)).unwrap_or(0);
        let mut b = i64::try_from(rng.below(3000)).unwrap_or(1);
        if b == a {
            b = (a + 1) % 3000;
        }
        Scenario {
            bad: vec![(a, Bad::Permanent), (b, Bad::Permanent)],
            ..crash_loop(seed)
        }
    });
    family("two adjacent poisons, seek-back", |seed| {
        let a = mid_batch(seed);
        Scenario {
            bad: vec![(a, Bad::Permanent), (a + 1, Bad::Permanent)],
            on_poison: OnPoison::SeekBack,
            commit: CommitPolicy::PerRecord,
            ..crash_loop(seed)
        }
    });
}

#[test]
fn a_record_that_fails_twice_then_succeeds_is_not_diverted() {
    for on_poison in [OnPoison::Crash { leave: false }, OnPoison::SeekBack] {
        family(&format!("transient x2, {on_poison:?}"), |seed| Scenario {
            bad: vec![(mid_batch(seed), Bad::Transient(2))],
            on_poison,
            ..crash_loop(seed)
        });
    }
}

#[test]
fn a_failing_dead_letter_write_hides_nothing_and_is_retried() {
    let outs = family("DLQ fails 3 times first", |seed| Scenario {
        dlq_fail_first: 3,
        ..crash_loop(seed)
    });
    for o in &outs {
        let divert_failures = o
            .reports
            .iter()
            .filter(|r| matches!(r.event, Event::DivertFailed { .. }))
            .count();
        assert_eq!(divert_failures, 3);
        // Every retry emitted the same record.
        assert!(o.emissions.len() >= 4, "{:?}", o.emissions);
    }
}

#[test]
fn backoff_delays_redelivery_in_isolation() {
    // A crash loop with fast restarts: without backoff the group gets its records again
    // within the restart time; with backoff the gate holds them back, doubling up to
    // the cap.
    let with = |backoff_ms: u64| {
        move |seed| Scenario {
            cfg: DetectConfig {
                backoff_initial: Duration::from_millis(backoff_ms),
                backoff_max: Duration::from_secs(30),
                ..Default::default()
            },
            restart_ms: 100,
            ..crash_loop(seed)
        }
    };
    let off = family("crash, restart 0.1s, no backoff", with(0));
    let on = family("crash, restart 0.1s, backoff 1s..30s", with(1000));
    for (a, b) in off.iter().zip(&on) {
        assert!(
            a.max_redelivery_wait_ms < 1000,
            "{}",
            a.max_redelivery_wait_ms
        );
        assert!(
            b.max_redelivery_wait_ms >= 1000,
            "{}",
            b.max_redelivery_wait_ms
        );
        assert_eq!(a.emitted, b.emitted);
    }
}

#[test]
fn healthy_consumers_never_have_a_record_diverted() {
    family("healthy: slow, 5s commits", |seed| Scenario {
        log_len: 400,
        proc_ms: 150 + Rng::new(seed).below(100),
        ..healthy(seed)
    });
    family("healthy: idle long polls for 20 min", |seed| Scenario {
        log_len: 600,
        idle_tail_ms: 20 * 60 * 1000,
        ..healthy(seed)
    });
    family(
        "healthy: rebalances every 3s, no commit on revoke",
        |seed| Scenario {
            commit: CommitPolicy::IntervalMs(2000),
            rebalance_every_ms: Some(3000 + Rng::new(seed).below(500)),
            commit_on_revoke: false,
            proc_ms: 2,
            ..healthy(seed)
        },
    );
    family("healthy: restarts after clean commits", |seed| Scenario {
        healthy_restart_every_ms: Some(4000 + Rng::new(seed).below(2000)),
        restart_ms: 500,
        ..healthy(seed)
    });
    family("healthy: lag, small fetches, empty answers", |seed| {
        Scenario {
            produce_per_sec: 300,
            fetch_records: 40,
            empty_fetch_pct: 30,
            proc_ms: 4,
            ..healthy(seed)
        }
    });
    family("healthy: seek-backs below max_deliveries", |seed| {
        Scenario {
            bad: vec![
                (mid_batch(seed), Bad::Transient(1)),
                (mid_batch(seed) + 700, Bad::Transient(1)),
            ],
            on_poison: OnPoison::SeekBack,
            ..healthy(seed)
        }
    });
    family(
        "healthy: crash once per record, per-record commits",
        |seed| Scenario {
            bad: vec![(mid_batch(seed), Bad::Transient(1))],
            commit: CommitPolicy::PerRecord,
            ..healthy(seed)
        },
    );
}

#[test]
fn healthy_rebalance_storm_never_emits() {
    // A storm of rebalances, each before the new owner's first commit: the same offset
    // is re-delivered again and again with no failure at all. The partition gets
    // isolated, and isolation must still emit nothing.
    let outs = family("storm: 40s of rebalances every 0.7s", |seed| Scenario {
        log_len: 1500,
        commit: CommitPolicy::IntervalMs(1000),
        rebalance_every_ms: Some(700 + Rng::new(seed).below(100)),
        rebalance_until_ms: 40_000,
        commit_on_revoke: false,
        ..healthy(seed)
    });
    for o in &outs {
        // Every new owner's JoinGroup is seen: no re-delivery counts, nothing isolates.
        assert!(!o
            .reports
            .iter()
            .any(|r| matches!(r.event, Event::IsolationStarted { .. })));
    }
}

#[test]
fn seek_backs_fewer_than_max_deliveries_on_nearby_records_are_not_diverted() {
    // Two records of one 40-record fetch each fail twice in process (seek back to
    // them), then succeed: the first isolates the partition, the second is failed only
    // twice and must not be named by the narrowing windows.
    family("seek-back x2 on two nearby records", |seed| {
        let a = i64::try_from(Rng::new(seed).below(10)).unwrap_or(0);
        let b = a + 5 + i64::try_from(Rng::new(seed + 1).below(25)).unwrap_or(12);
        Scenario {
            log_len: 40,
            fetch_records: 40,
            prefetch: 40,
            bad: vec![(a, Bad::Transient(2)), (b, Bad::Transient(2))],
            on_poison: OnPoison::SeekBack,
            commit: CommitPolicy::PerRecord,
            proc_ms: 10,
            ..healthy(seed)
        }
    });
}

#[test]
fn eager_rebalances_back_to_the_same_member_with_a_stalled_commit_never_emit() {
    // librdkafka-style: the member holds prefetched records it has not reached (slow
    // records, a short stall timeout), each rebalance gives the partition back to it
    // and it fetches again from the commit on the same connection.
    let outs = family("eager rebalances to the same member, stalled", |seed| {
        Scenario {
            log_len: 30,
            fetch_records: 30,
            prefetch: 30,
            commit: CommitPolicy::PerRecord,
            proc_ms: 4000,
            rebalance_every_ms: Some(3200 + Rng::new(seed).below(400)),
            rebalance_until_ms: 40_000,
            rebalance_keeps_member: true,
            commit_on_revoke: false,
            cfg: DetectConfig {
                stall_timeout: Duration::from_secs(3),
                ..Default::default()
            },
            ..healthy(seed)
        }
    });
    for o in &outs {
        assert!(o
            .reports
            .iter()
            .any(|r| matches!(r.event, Event::StallStarted { .. })));
        assert!(!o
            .reports
            .iter()
            .any(|r| matches!(r.event, Event::IsolationStarted { .. })));
    }
}

/// Any shape: failure mode, commit policy, fetch size, prefetch, poison count and kind,
/// rebalances, DLQ failures, backoff, thresholds, all drawn from the seed.
fn random_shape(seed: u64) -> Scenario {
    let mut r = Rng::new(seed.wrapping_mul(7919));
    let log_len = 200 + i64::try_from(r.below(2800)).unwrap_or(0);
    let on_poison = match r.below(5) {
        0 => OnPoison::Crash { leave: false },
        1 => OnPoison::Crash { leave: true },
        2 => OnPoison::SeekBack,
        3 => OnPoison::Hang {
            keeps_fetching: false,
        },
        _ => OnPoison::Hang {
            keeps_fetching: true,
        },
    };
    let mut commit = match r.below(4) {
        0 => CommitPolicy::PerRecord,
        1 => CommitPolicy::EveryN(u32::try_from(5 + r.below(200)).unwrap_or(5)),
        _ => CommitPolicy::IntervalMs(200 + r.below(8000)),
    };
    if on_poison
        == (OnPoison::Hang {
            keeps_fetching: true,
        })
        && matches!(commit, CommitPolicy::EveryN(_))
    {
        // Known limit (see the dedicated test): a client that keeps fetching while the
        // application hangs, committing only every N records, is never searched.
        commit = CommitPolicy::IntervalMs(1000);
    }
    let mut bad = Vec::new();
    for _ in 0..r.below(4) {
        let off = i64::try_from(r.below(u64::try_from(log_len).unwrap_or(1))).unwrap_or(0);
        if bad.iter().any(|(o, _)| *o == off) {
            continue;
        }
        let kind = if r.chance(25) {
            Bad::Transient(u32::try_from(1 + r.below(2)).unwrap_or(1))
        } else {
            Bad::Permanent
        };
        bad.push((off, kind));
    }
    let max_deliveries = u32::try_from(2 + r.below(4)).unwrap_or(3);
    // A transient record stays unseen if it succeeds before max_deliveries is reached;
    // a hang counts double (the re-delivery after a stall adds two).
    let unseen_failures = match on_poison {
        OnPoison::Hang { .. } => max_deliveries.div_ceil(2) - 1,
        _ => max_deliveries - 1,
    };
    bad.retain(|(_, b)| !matches!(b, Bad::Transient(_)) || unseen_failures > 0);
    for (_, b) in bad.iter_mut() {
        if let Bad::Transient(n) = b {
            *n = (*n).min(unseen_failures);
        }
    }
    let fetch_records = 1 + i64::try_from(r.below(800)).unwrap_or(0);
    let commit_every = match commit {
        CommitPolicy::IntervalMs(ms) => ms,
        _ => 1000,
    };
    Scenario {
        log_len,
        bad,
        on_poison,
        commit,
        fetch_records,
        prefetch: usize::try_from(1 + r.below(4000)).unwrap_or(1),
        proc_ms: r.below(20),
        restart_ms: 50 + r.below(5000),
        evict_ms: 30_000 + r.below(300_000),
        empty_fetch_pct: u32::try_from(r.below(30)).unwrap_or(0),
        // A group that rebalances more often than its quiet windows last cannot be
        // searched if it only commits every N records (the search is abandoned, safely).
        rebalance_every_ms: r.chance(20).then(|| match commit {
            CommitPolicy::EveryN(_) => 1_200_000 + r.below(600_000),
            _ => (3 * commit_every).max(100_000) + r.below(200_000),
        }),
        commit_on_revoke: r.chance(50),
        dlq_fail_first: u32::try_from(r.below(3)).unwrap_or(0),
        cfg: DetectConfig {
            max_deliveries,
            backoff_initial: Duration::from_millis(if r.chance(30) {
                200 + r.below(2000)
            } else {
                0
            }),
            isolation_confirmations: u32::try_from(1 + r.below(2)).unwrap_or(1),
            ..Default::default()
        },
        // Hang-type consumers that commit every N records need quiet windows of twice
        // their eviction time: slow, but they get there.
        time_limit_ms: 24 * 3600 * 1000,
        seed,
        ..Default::default()
    }
}

#[test]
fn any_shape_keeps_the_invariants() {
    family("random shapes", random_shape);
}

#[test]
#[ignore = "debugging aid: SEED=n cargo test --lib detect::sim_tests::debug_one -- --ignored --nocapture"]
fn debug_one() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let s = Scenario {
        trace: true,
        ..random_shape(seed)
    };
    eprintln!("{s:?}");
    let o = run(&s);
    for r in &o.reports {
        eprintln!("REPORT {}", r.event);
    }
    eprintln!(
        "emitted {:?} errors {:?} finished {}",
        o.emissions, o.errors, o.finished
    );
}
