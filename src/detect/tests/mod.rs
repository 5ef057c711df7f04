//! Unit tests of the detector, call by call: what counts as a re-delivery, how
//! isolation gates and bisects, backoff, diversion, stalls, sharing and memory bounds.

use std::time::{Duration, Instant};

use super::*;

mod sim;
mod sim_group;
mod sim_tests;

/// A detector, one key and a clock in milliseconds.
struct H {
    det: Detector,
    cfg: DetectConfig,
    key: PartitionKey,
    t0: Instant,
}

impl H {
    fn new(cfg: DetectConfig) -> Self {
        H {
            det: Detector::new(DetectorLimits::default()),
            cfg,
            key: PartitionKey::new("orders-svc", "order.confirmed", 0),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// A fetch on `conn` from `fetch` that returned records `first..=last`.
    fn fetch(&mut self, ms: u64, conn: u64, fetch: i64, first: i64, last: i64) -> DeliveryDecision {
        let (cfg, key, now) = (self.cfg, self.key.clone(), self.at(ms));
        self.det.delivery(
            &cfg,
            &key,
            fetch,
            Some(Visible { first, last }),
            ConnId(conn),
            now,
        )
    }

    fn empty_fetch(&mut self, ms: u64, conn: u64, fetch: i64) -> DeliveryDecision {
        let (cfg, key, now) = (self.cfg, self.key.clone(), self.at(ms));
        self.det
            .delivery(&cfg, &key, fetch, None, ConnId(conn), now)
    }

    fn commit(&mut self, ms: u64, offset: i64) {
        let (key, now) = (self.key.clone(), self.at(ms));
        self.det.commit(&key, offset, now);
    }

    fn crash(&mut self, ms: u64, conn: u64) {
        let now = self.at(ms);
        self.det.member_lost("orders-svc", ConnId(conn), now);
    }

    fn status(&self) -> PartitionStatus {
        self.det.state(&self.key).expect("key tracked")
    }

    fn reports(&mut self, ms: u64) -> Vec<Event> {
        let now = self.at(ms);
        self.det.tick(now).into_iter().map(|r| r.event).collect()
    }

    /// Three crash-loop deliveries of `0..=99` from the commit 0: the third isolates.
    fn isolate_0_to_99(&mut self) -> DeliveryDecision {
        self.commit(0, 0);
        assert_eq!(self.fetch(0, 1, 0, 0, 99).action, Action::Pass);
        self.crash(100, 1);
        assert_eq!(self.fetch(200, 2, 0, 0, 99).action, Action::Pass);
        self.crash(300, 2);
        self.fetch(400, 3, 0, 0, 99)
    }
}

fn trim(last_offset: i64) -> Action {
    Action::Trim { last_offset }
}

#[test]
fn a_fetch_without_records_is_not_a_delivery() {
    let mut h = H::new(DetectConfig::default());
    h.commit(0, 10);
    for i in 0..50 {
        assert_eq!(
            h.empty_fetch(i * 500, 1 + i % 3, 10),
            DeliveryDecision::pass()
        );
    }
    let st = h.status();
    assert_eq!(st.phase, Phase::Normal);
    assert_eq!(st.delivered_to, None);
    assert_eq!(st.tracked_offsets, 0);
    // Nothing outstanding: an idle consumer at the log end never stalls.
    assert!(h.reports(3_600_000).is_empty());
}

#[test]
fn a_redelivery_is_counted_only_while_the_commit_has_not_passed_it() {
    let mut h = H::new(DetectConfig::default());
    h.fetch(0, 1, 0, 0, 99);
    h.commit(10, 50);
    // Below the commit: not counted.
    h.fetch(20, 2, 40, 40, 99);
    assert_eq!(h.status().tracked_offsets, 0);
    // At the commit, already delivered: counted.
    h.fetch(30, 3, 50, 50, 99);
    let st = h.status();
    assert_eq!((st.phase, st.max_count), (Phase::Suspect, 2));
    // The commit passing it forgets the count.
    h.commit(40, 51);
    assert_eq!(h.status().phase, Phase::Normal);
    assert_eq!(h.status().tracked_offsets, 0);
}

#[test]
fn a_connection_moving_forward_is_not_a_redelivery() {
    let mut h = H::new(DetectConfig::default());
    h.fetch(0, 1, 0, 0, 499);
    // The partition moves to member 2, which resumes at 200 and reads on.
    h.fetch(10, 2, 200, 200, 299);
    h.fetch(20, 2, 300, 300, 399);
    h.fetch(30, 2, 400, 400, 499);
    let st = h.status();
    assert_eq!(st.tracked_offsets, 1, "{st:?}");
    assert_eq!(st.max_count, 2);
}

#[test]
fn reasons_follow_what_the_group_did() {
    let reason_of = |setup: &dyn Fn(&mut H)| {
        let mut h = H::new(DetectConfig {
            max_deliveries: 2,
            ..Default::default()
        });
        h.commit(0, 0);
        h.fetch(0, 1, 0, 0, 9);
        setup(&mut h);
        h.reports(200_000)
            .into_iter()
            .find_map(|e| match e {
                Event::IsolationStarted { reason, .. } => Some(reason),
                _ => None,
            })
            .expect("isolated")
    };
    assert_eq!(
        reason_of(&|h| {
            h.crash(10, 1);
            h.fetch(20, 2, 0, 0, 9);
        }),
        Reason::CrashLoop
    );
    assert_eq!(
        reason_of(&|h| {
            h.fetch(20, 1, 0, 0, 9);
        }),
        Reason::SeekBack
    );
    assert_eq!(
        reason_of(&|h| {
            let now = h.at(15);
            h.det.member_left("orders-svc", &[ConnId(1)], now);
            h.fetch(20, 2, 0, 0, 9);
        }),
        Reason::Redelivery
    );
    assert_eq!(
        reason_of(&|h| {
            assert!(matches!(
                h.reports(61_000)[..],
                [Event::StallStarted { .. }]
            ));
            let now = h.at(119_000);
            h.det.member_left("orders-svc", &[ConnId(1)], now);
            h.fetch(120_000, 2, 0, 0, 9);
        }),
        Reason::Stalled
    );
}

#[test]
fn isolation_probes_the_redelivered_offset_first() {
    let mut h = H::new(DetectConfig::default());
    let d = h.isolate_0_to_99();
    assert_eq!(d.action, trim(0));
    assert_eq!(d.poison, None);
    let st = h.status();
    assert_eq!(st.phase, Phase::Isolating);
    let iso = st.isolation.expect("isolated");
    assert_eq!((iso.origin, iso.window_end, iso.range_end), (0, 0, 99));
    // Fetches beyond the window get nothing until the commit proves it processed.
    assert_eq!(h.fetch(500, 3, 1, 1, 99).action, Action::Withhold);
    assert_eq!(h.status().delivered_to, Some(99));
}

#[test]
fn bisection_names_the_exact_record() {
    // Poison at 37 of 0..=99; the consumer commits per record and crashes on 37.
    let poison = 37;
    let mut h = H::new(DetectConfig::default());
    let mut d = h.isolate_0_to_99();
    let (mut t, mut conn, mut pos, mut committed) = (1000, 3, 0, 0);
    let mut windows = Vec::new();
    for _ in 0..40 {
        if let Some(p) = d.poison {
            assert_eq!(p.offset, poison);
            assert_eq!(p.reason, Reason::CrashLoop);
            // Two crashes isolated the partition; windows step and then double up
            // from the commit, and the crash on the window that holds 37 alone names it.
            assert!(
                conn - 3 <= 2,
                "{} crashes in isolation: {windows:?}",
                conn - 3
            );
            return;
        }
        let end = match d.action {
            Action::Trim { last_offset } => last_offset,
            Action::Pass => 99,
            Action::Withhold => pos - 1,
        };
        windows.push(end);
        // Process what was delivered, committing per record, until the poison.
        while pos <= end && pos != poison {
            pos += 1;
            committed = pos;
            h.commit(t, committed);
        }
        t += 100;
        if pos <= end {
            // Crashed on the poison: restart from the commit.
            h.crash(t, conn);
            conn += 1;
            pos = committed;
        }
        t += 100;
        d = h.fetch(t, conn, pos, pos, 99);
    }
    panic!("not found: windows {windows:?}");
}

#[test]
fn a_failure_that_does_not_repeat_ends_isolation_without_a_poison() {
    let mut h = H::new(DetectConfig::default());
    h.isolate_0_to_99();
    // The group now processes everything: windows pass by commit until the range end.
    h.commit(500, 1);
    let mut t = 1000;
    let mut pos = 1;
    for _ in 0..60 {
        let d = h.fetch(t, 3, pos, pos, 99);
        assert_eq!(d.poison, None);
        let end = match d.action {
            Action::Trim { last_offset } => last_offset,
            Action::Pass => 99,
            Action::Withhold => break,
        };
        pos = end + 1;
        h.commit(t + 50, pos);
        t += 100;
        if h.status().phase != Phase::Isolating {
            break;
        }
    }
    assert_eq!(h.status().phase, Phase::Normal);
    assert_eq!(h.fetch(t, 3, pos, pos, 199).action, Action::Pass);
}

#[test]
fn backoff_withholds_until_the_delay_has_passed() {
    let mut h = H::new(DetectConfig {
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(4),
        // Three failures of a record alone name it: the first two only back off.
        isolation_confirmations: 3,
        ..Default::default()
    });
    h.commit(0, 0);
    h.fetch(0, 1, 0, 0, 99);
    for (i, t) in [300u64, 700].into_iter().enumerate() {
        h.crash(t, 1 + i as u64);
        h.fetch(t + 50, 2 + i as u64, 0, 0, 99);
    }
    assert_eq!(h.status().phase, Phase::Isolating);
    // The first record passes; the next one fails: backoff 1s from the failure's judgement.
    h.commit(900, 1);
    assert_eq!(h.fetch(910, 3, 1, 1, 99).action, trim(1));
    h.crash(950, 3);
    assert_eq!(h.fetch(1000, 4, 1, 1, 99).action, Action::Withhold);
    assert_eq!(h.fetch(1900, 4, 1, 1, 99).action, Action::Withhold);
    // Delivered after the delay; the retry after a withheld answer is not a failure.
    assert_eq!(h.fetch(2100, 4, 1, 1, 99).action, trim(1));
    assert_eq!(h.status().isolation.map(|i| i.failures), Some(1));
    // The second failure doubles the delay.
    h.crash(2200, 4);
    assert_eq!(h.fetch(2300, 5, 1, 1, 99).action, Action::Withhold);
    assert_eq!(h.fetch(4200, 5, 1, 1, 99).action, Action::Withhold);
    let d = h.fetch(4400, 5, 1, 1, 99);
    assert_eq!(d.action, trim(1));
    assert_eq!(h.status().isolation.map(|i| i.failures), Some(2));
}

#[test]
fn diversion_holds_the_record_while_the_write_is_in_flight() {
    let mut h = H::new(DetectConfig::default());
    h.isolate_0_to_99();
    // The probe (offset 0) fails: with per-record commits 0 is the poison.
    h.crash(500, 3);
    let d = h.fetch(600, 4, 0, 0, 99);
    let p = d.poison.expect("poison");
    assert_eq!(
        (p.offset, p.reason, p.deliveries),
        (0, Reason::CrashLoop, 4)
    );
    assert_eq!(d.action, Action::Withhold);
    assert_eq!(h.status().phase, Phase::Diverting);
    assert_eq!(h.fetch(700, 4, 0, 0, 99).action, Action::Withhold);
    // The write failed: the record is delivered again, and the next failure re-emits.
    let key = h.key.clone();
    h.det.divert_failed(&key, 0);
    assert_eq!(h.fetch(800, 4, 0, 0, 99).action, trim(0));
    assert_eq!(h.fetch(900, 4, 0, 0, 99).poison.map(|p| p.offset), Some(0));
    // Written: the proxy hides 0; detection starts afresh and the group moves on.
    h.det.diverted(&key, 0);
    assert_eq!(h.status().phase, Phase::Normal);
    assert_eq!(h.fetch(1000, 4, 0, 1, 99).action, Action::Pass);
    let events = h.reports(1100);
    assert!(events.contains(&Event::DivertFailed { offset: 0 }));
    assert!(events.contains(&Event::IsolationEnded {
        outcome: IsolationOutcome::Diverted
    }));
}

#[test]
fn a_move_to_another_member_never_confirms_a_record() {
    let mut h = H::new(DetectConfig::default());
    h.isolate_0_to_99();
    // The partition keeps moving to new members with nobody leaving (a rebalance).
    for (i, conn) in (10..20).enumerate() {
        let ms = 1000 + 100 * u64::try_from(i).unwrap_or(0);
        let d = h.fetch(ms, conn, 0, 0, 99);
        assert_eq!(d.poison, None);
        assert_eq!(d.action, trim(0));
    }
    assert_eq!(h.status().isolation.map(|i| i.failures), Some(0));
}

#[test]
fn stall_is_reported_once_per_episode_and_counts_double() {
    let mut h = H::new(DetectConfig::default());
    h.commit(0, 0);
    h.fetch(0, 1, 0, 0, 99);
    assert!(h.reports(30_000).is_empty());
    let events = h.reports(61_000);
    assert!(matches!(
        events[..],
        [Event::StallStarted {
            committed: Some(0),
            delivered_to: 99,
            ..
        }]
    ));
    assert!(h.reports(120_000).is_empty(), "one report per episode");
    assert!(h.status().stalled);
    // Evicted, another member resumes: one re-delivery after a stall counts two.
    let now = h.at(299_000);
    h.det.member_left("orders-svc", &[ConnId(1)], now);
    let d = h.fetch(300_000, 2, 0, 0, 99);
    assert_eq!(d.action, trim(0));
    assert_eq!(h.status().phase, Phase::Isolating);
    // A new episode after the commit moves again.
    h.commit(301_000, 1);
    h.commit(302_000, 100);
    h.fetch(303_000, 2, 100, 100, 199);
    assert!(h.reports(364_000).iter().any(|e| matches!(
        e,
        Event::StallStarted {
            committed: Some(100),
            ..
        }
    )));
}

#[test]
fn groups_are_separate() {
    let mut h = H::new(DetectConfig::default());
    h.isolate_0_to_99();
    let other = PartitionKey::new("billing", "order.confirmed", 0);
    let d = h.det.delivery(
        &DetectConfig::default(),
        &other,
        0,
        Some(Visible { first: 0, last: 99 }),
        ConnId(9),
        h.at(500),
    );
    assert_eq!(d, DeliveryDecision::pass());
    assert_eq!(h.det.isolated_partitions(), 1);
    assert_eq!(h.det.tracked_partitions(), 2);
}

#[test]
fn the_search_travels_to_another_sidecar() {
    let mut a = H::new(DetectConfig::default());
    a.commit(0, 0);
    a.fetch(0, 1, 0, 0, 99);
    a.crash(100, 1);
    a.fetch(400, 2, 0, 0, 99);
    a.crash(500, 2);
    let _ = a.reports(1_200);
    assert_eq!(a.status().phase, Phase::Isolating);
    let shared = a.det.take_changed_searches();
    assert_eq!(shared.len(), 1);
    let (key, search) = &shared[0];
    assert!(search.isolation.is_some());
    assert!(a.det.take_changed_searches().is_empty(), "shared once");
    // The partition moves to another pod: its sidecar continues the same search.
    let mut b = H::new(DetectConfig::default());
    assert!(b.det.adopt(key, search, "pod-a", "pod-b", b.at(0)));
    assert!(
        !b.det.adopt(key, search, "pod-a", "pod-b", b.at(0)),
        "not twice"
    );
    b.commit(0, 0);
    let d = b.fetch(400, 7, 0, 0, 99);
    assert_eq!(d.action, trim(0), "the window, not the whole range");
    let st = b.status();
    assert_eq!(st.isolation.map(|i| i.range_end), Some(99));
    assert_eq!(st.owner.as_deref(), Some("pod-a"));
    // Its own change makes it the owner and is shared with a higher version.
    b.commit(500, 1);
    let (_, newer) = b.det.take_changed_searches().pop().expect("changed");
    assert!(newer.version > search.version);
    let mut older = newer.clone();
    older.version = search.version.saturating_sub(1);
    assert!(!a.det.adopt(key, &older, "pod-b", "pod-a", a.at(2_000)));
    assert!(a.det.adopt(key, &newer, "pod-b", "pod-a", a.at(2_000)));
    assert_eq!(a.status().owner.as_deref(), Some("pod-b"));
}

/// A sidecar killed mid-search shared its state a moment before it died: the client
/// it served has records of later windows, and commits the restarted sidecar never saw.
#[test]
fn a_restored_search_catches_up_with_a_client_ahead_of_it() {
    let mut a = H::new(DetectConfig::default());
    a.isolate_0_to_99();
    let (key, stale) = a.det.take_changed_searches().pop().expect("shared");
    assert_eq!(stale.isolation.as_ref().map(|i| i.window_end), Some(0));

    // The client is at 8: it has records this sidecar never handed out. Its next record
    // opens the window, so its commit moves the search on.
    let mut b = H::new(DetectConfig::default());
    assert!(b
        .det
        .adopt(&key, &stale, "quarantine", "quarantine-b", b.at(0)));
    assert!(b.det.tracks(&key));
    assert_eq!(b.fetch(100, 7, 8, 8, 99).action, trim(8));
    b.commit(200, 9);
    let iso = b.status().isolation.expect("still searching");
    assert!(iso.good_to >= 8 && iso.window_end > 8, "{iso:?}");

    // The client is just past the stale window (it was handed record 0 before the
    // restart): that window is behind it, so it gets its next record.
    let mut c = H::new(DetectConfig::default());
    assert!(c
        .det
        .adopt(&key, &stale, "quarantine", "quarantine-c", c.at(0)));
    assert_eq!(c.fetch(100, 7, 1, 1, 99).action, trim(1));
    // Once this sidecar handed out a window, the gate is its own again: asking past it
    // waits for the commit.
    assert_eq!(c.fetch(200, 7, 2, 2, 99).action, Action::Withhold);

    // A commit read from the broker applies only when it is ahead of what is known.
    let mut d = H::new(DetectConfig::default());
    assert!(d
        .det
        .adopt(&key, &stale, "quarantine", "quarantine-d", d.at(0)));
    d.det.commit_read(&key, 5, d.at(50));
    assert_eq!(d.status().committed, Some(5));
    d.det.commit_read(&key, 3, d.at(60));
    assert_eq!(
        d.status().committed,
        Some(5),
        "an older commit is not a seek back"
    );
}

/// Two sidecars, one per replica: a search on a partition consumed through the other
/// sidecar holds nothing here. Once that partition is fetched here, its probe holds this
/// sidecar's other partitions of the group as usual.
#[test]
fn a_probe_holds_only_where_its_partition_is_consumed() {
    let mut a = H::new(DetectConfig::default());
    a.isolate_0_to_99();
    let (probed, search) = a.det.take_changed_searches().pop().expect("shared");
    let mut b = H::new(DetectConfig::default());
    assert!(b.det.adopt(&probed, &search, "pod-a", "pod-b", b.at(0)));
    let other = PartitionKey::new("orders-svc", "order.confirmed", 1);
    let visible = Some(Visible { first: 0, last: 9 });
    let cfg = b.cfg;
    let d = b
        .det
        .delivery(&cfg, &other, 0, visible, ConnId(5), b.at(100));
    assert_eq!(
        d,
        DeliveryDecision::pass(),
        "held for a probe of a partition not fetched here"
    );
    // The probed partition's consumer now fetches through this sidecar.
    b.fetch(200, 6, 0, 0, 99);
    let d = b
        .det
        .delivery(&cfg, &other, 10, visible, ConnId(5), b.at(300));
    assert_eq!((d.action, d.hold), (Action::Withhold, Some(Hold::Probe)));
}

#[test]
fn memory_is_bounded() {
    let limits = DetectorLimits {
        max_keys: 2,
        max_counts_per_key: 4,
        evict_idle: Duration::from_secs(60),
        ..Default::default()
    };
    let mut h = H::new(DetectConfig {
        max_deliveries: 100,
        ..Default::default()
    });
    h.det = Detector::new(limits);
    // Many re-delivered offsets: only the most recent four are kept.
    h.fetch(0, 1, 0, 0, 999);
    for i in 0..20u64 {
        let off = i64::try_from(i * 10).unwrap_or(0);
        h.fetch(10 + i, 100 + i, off, off, off + 5);
        h.fetch(10 + i, 200 + i, off, off, off + 5);
    }
    assert_eq!(h.status().tracked_offsets, 4);
    // A third key is not tracked, and says so once.
    let cfg = DetectConfig::default();
    for p in 1..4 {
        let key = PartitionKey::new("g", "t", p);
        h.det.delivery(
            &cfg,
            &key,
            0,
            Some(Visible { first: 0, last: 1 }),
            ConnId(1),
            h.at(100),
        );
    }
    assert_eq!(h.det.tracked_partitions(), 2);
    let events = h.reports(200);
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == Event::KeyLimitReached)
            .count(),
        1
    );
    // Idle keys are forgotten.
    h.reports(200_000);
    assert_eq!(h.det.tracked_partitions(), 0);
}

#[test]
fn odd_inputs_do_not_panic() {
    let mut h = H::new(DetectConfig::default());
    h.commit(0, -1);
    assert_eq!(h.det.tracked_partitions(), 0);
    let d = h.fetch(0, 1, 50, 10, 5);
    assert_eq!(d.action, Action::Pass);
    h.fetch(1, 1, i64::MAX, i64::MAX, i64::MAX);
    h.fetch(2, 2, 0, 0, i64::MAX);
    let key = h.key.clone();
    h.det.diverted(&key, 12345);
    h.det.divert_failed(&key, 12345);
    h.det.member_lost("nobody", ConnId(5), h.at(3));
    h.reports(4);
}

#[test]
fn a_gap_at_the_window_end_lets_the_next_record_through() {
    let mut h = H::new(DetectConfig::default());
    h.isolate_0_to_99();
    // The client is at 0 but the log has no record before 5 (compaction).
    let d = h.fetch(500, 3, 0, 5, 99);
    assert_eq!(d.action, trim(5));
}

/// Seek-backs on the same connection: the app re-fetches from `offset`.
fn seek_back(h: &mut H, ms: u64, offset: i64) -> DeliveryDecision {
    h.fetch(ms, 1, offset, offset, 39)
}

#[test]
fn a_record_is_diverted_only_after_failing_max_deliveries_times_itself() {
    // 40 records; offset 0 fails twice (isolating the partition), then offset 17 fails.
    for seventeen_is_poison in [false, true] {
        let mut h = H::new(DetectConfig::default());
        h.commit(0, 0);
        h.fetch(0, 1, 0, 0, 39);
        seek_back(&mut h, 100, 0);
        assert_eq!(seek_back(&mut h, 200, 0).action, trim(0));
        assert_eq!(h.status().phase, Phase::Isolating);
        h.commit(300, 1);
        // Windows step up from the commit one record at a time, then wider.
        assert_eq!(seek_back(&mut h, 400, 1).action, trim(1));
        for o in 2..=17 {
            h.commit(500, o);
        }
        // 17 is delivered, then fails twice: the first failure narrows to it, the second
        // is its own.
        assert_eq!(seek_back(&mut h, 550, 17).poison, None);
        assert_eq!(seek_back(&mut h, 600, 17).poison, None);
        assert_eq!(seek_back(&mut h, 700, 17).poison, None);
        if seventeen_is_poison {
            let p = seek_back(&mut h, 800, 17)
                .poison
                .expect("third failure names it");
            assert_eq!(
                (p.offset, p.deliveries, p.reason),
                (17, 4, Reason::SeekBack)
            );
        } else {
            // Processed at the third attempt: isolation goes on and ends without poison.
            h.commit(800, 18);
            let mut t = 900;
            let mut pos = 18;
            while pos < 40 {
                let d = seek_back(&mut h, t, pos);
                assert_eq!(d.poison, None);
                let end = match d.action {
                    Action::Trim { last_offset } => last_offset,
                    Action::Pass => 39,
                    Action::Withhold => pos - 1,
                };
                pos = end + 1;
                h.commit(t + 50, pos);
                t += 100;
            }
            assert_eq!(h.status().phase, Phase::Normal);
        }
    }
}

#[test]
fn rebalance_redeliveries_on_the_same_connection_are_not_failures() {
    let cfg = DetectConfig {
        stall_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let mut h = H::new(cfg);
    h.fetch(0, 1, 0, 0, 299);
    for round in 0..6u64 {
        let t = 4_000 * (round + 1);
        // Waiting behind other partitions: the commit stalls.
        h.reports(t);
        h.det.rebalance("orders-svc", h.at(t + 100));
        let d = h.fetch(t + 200, 1, 0, 0, 299);
        assert_eq!((d.action, d.poison), (Action::Pass, None));
    }
    let st = h.status();
    assert_eq!((st.phase, st.max_count), (Phase::Normal, 0));
    // A crash followed by the rebalance its restart causes still counts.
    h.crash(30_000, 1);
    h.det.rebalance("orders-svc", h.at(30_100));
    h.fetch(30_200, 2, 0, 0, 299);
    assert_eq!(h.status().max_count, 2);
}

#[test]
fn only_fresh_deliveries_of_a_quiet_partition_may_stream() {
    let mut h = H::new(DetectConfig::default());
    let key = h.key.clone();
    assert!(h.det.may_stream(&key, 0), "an unknown partition");
    assert_eq!(h.fetch(0, 1, 0, 0, 9).action, Action::Pass);
    h.commit(10, 10);
    assert!(h.det.may_stream(&key, 10), "the next records");
    assert!(
        !h.det.may_stream(&key, 5),
        "records delivered before: a re-delivery"
    );
    assert_eq!(h.fetch(20, 1, 10, 10, 19).action, Action::Pass);
    // The member crashes with 10..=19 out: from then on the partition has a failure to
    // judge, and nothing of it streams until the commit passes it.
    h.crash(30, 1);
    h.reports(1_000);
    assert!(!h.det.may_stream(&key, 20));
    assert!(!h.det.may_stream(&key, 10));
    let other = PartitionKey::new("other-group", "order.confirmed", 0);
    assert!(
        h.det.may_stream(&other, 10),
        "another group is not concerned"
    );
}
