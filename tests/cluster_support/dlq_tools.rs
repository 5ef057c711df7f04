//! `quarantine dlq inspect | replay | stats` against a real broker, through the library
//! and through the binary.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use quarantine::cli::dlq::ledger::{SOURCE_HEADER, TASK_HEADER};
use quarantine::cli::dlq::{
    read_dlq, stats, Out, ProgressMode, ReplayOptions, ReplayReport, Scope, Stop, ToolError,
};
use quarantine::cluster::Cluster;
use quarantine::dead_letter::{
    dead_letter_record, dlq_partition, keys, Diagnosis, HeaderLimits, HeaderStyle, Origin, Reason,
    Stage,
};
use quarantine::protocol::record::{Header, Record};

use super::cluster;
use super::tansu::{python, Broker, CONSUME_PY};

const SOURCE: &str = "order.confirmed";
const DLQ: &str = "order.confirmed.dlq";
const WAIT: Duration = Duration::from_secs(10);

fn source(key: &str, headers: Vec<Header>) -> Record {
    Record {
        offset: 0,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(format!(
            "{{\"order\":\"{key}\",\"couponId\":\"X\"}}"
        ))),
        headers,
    }
}

/// Writes the dead-letter form of `record` (from `partition`@`offset`) to the DLQ, as the
/// proxy would; returns the DLQ partition and offset.
async fn divert(
    c: &Cluster,
    record: &Record,
    partition: i32,
    offset: i64,
    reason: Reason,
    style: HeaderStyle,
) -> (i32, i64) {
    let origin = Origin {
        topic: SOURCE.into(),
        partition,
        offset,
        group: "orders".into(),
        timestamp: record.timestamp,
    };
    let diag = Diagnosis {
        stage: Stage::KafkaConsume,
        reason,
        class_name: None,
        exception_class: "quarantine.PoisonRecord".into(),
        message: "delivered 3 times, never committed".into(),
        delivery_count: 3,
        first_delivery_ms: 1,
        last_delivery_ms: 2,
        diverted_ms: 3,
    };
    let dl = dead_letter_record(
        record,
        &origin,
        &diag,
        Some(style),
        "test-pod",
        &HeaderLimits::default(),
    );
    let p = dlq_partition(partition, record.key.as_deref(), 3);
    (p, c.produce(DLQ, p, &[dl], -1, WAIT).await.unwrap())
}

fn options(dry_run: bool) -> ReplayOptions {
    ReplayOptions {
        to: None,
        dry_run,
        max_replays: 3,
        rate: None,
        resume: None,
        json: false,
        list: false,
        progress: ProgressMode::None,
        ledger: None,
        by: Some("test".into()),
        wait: false,
        wait_timeout: 0,
        release: false,
        admin: None,
    }
}

fn only(partition: i32, from_offset: i64) -> Scope {
    Scope {
        partition: vec![partition],
        from_offset: Some(from_offset),
        ..Scope::default()
    }
}

async fn replay(
    c: &Cluster,
    dlq: &str,
    scope: &Scope,
    options: &ReplayOptions,
) -> Result<ReplayReport, ToolError> {
    quarantine::cli::dlq::replay(
        c,
        dlq,
        scope,
        options,
        &mut Out::default(),
        &Stop::default(),
    )
    .await
}

async fn setup(b: &Broker) -> Cluster {
    let c = cluster(b);
    c.create_topic(SOURCE, 3, 1, &[]).await.unwrap();
    c.create_topic(DLQ, 3, 1, &[("cleanup.policy", "delete")])
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn inspect_stats_and_replay_with_a_loop_guard() {
    let Some(b) = Broker::start() else { return };
    let c = setup(&b).await;
    let a = source("order-17", vec![Header::new("traceparent", "00-1-2-01")]);
    divert(&c, &a, 2, 5, Reason::CrashLoop, HeaderStyle::Connect).await;
    divert(
        &c,
        &source("order-3", vec![]),
        0,
        1,
        Reason::Check,
        HeaderStyle::Spring,
    )
    .await;
    let tired = source("order-9", vec![Header::new(keys::REPLAY_COUNT, "3")]);
    divert(&c, &tired, 1, 9, Reason::SeekBack, HeaderStyle::Kip1191).await;
    c.produce(DLQ, 0, &[source("stray", vec![])], -1, WAIT)
        .await
        .unwrap();

    let all = read_dlq(&c, DLQ, &Scope::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    let p0 = read_dlq(&c, DLQ, &only(0, 0)).await.unwrap();
    assert_eq!(p0.len(), 2);
    let limited = Scope {
        limit: Some(1),
        ..Scope::default()
    };
    assert_eq!(read_dlq(&c, DLQ, &limited).await.unwrap().len(), 1);
    let s = stats(&all);
    assert_eq!(s.by_reason.get("crash-loop"), Some(&1));
    assert_eq!(s.by_reason.get("check"), Some(&1));
    assert_eq!(s.by_reason.get("seek-back"), Some(&1));
    assert_eq!((s.no_origin, s.replayed_before), (1, 1));
    assert_eq!(s.by_origin.get(&(SOURCE.to_string(), 2)), Some(&1));

    // Dry run: reports, writes nothing.
    let dry = replay(&c, DLQ, &Scope::default(), &options(true))
        .await
        .unwrap();
    assert_eq!((dry.replayed, dry.refused, dry.no_origin), (2, 1, 1));
    for p in 0..3 {
        assert!(c.read(SOURCE, p, 0, 10).await.unwrap().is_empty());
    }

    // Reason filter: only the check failure goes back, to its own partition.
    let check_only = Scope {
        reason: Some("check".into()),
        ..Scope::default()
    };
    let r = replay(&c, DLQ, &check_only, &options(false)).await.unwrap();
    assert_eq!((r.replayed, r.filtered), (1, 2));
    // Group and diversion-time filters (every record here was diverted at 3 ms by
    // `orders`): nothing of another group, nothing outside the time span.
    for (group, from, to) in [
        ("billing", None, None),
        ("orders", Some(4), None),
        ("orders", None, Some(2)),
    ] {
        let other = Scope {
            group: Some(group.into()),
            diverted_from: from,
            diverted_to: to,
            ..Scope::default()
        };
        let r = replay(&c, DLQ, &other, &options(true)).await.unwrap();
        assert_eq!(r.replayed, 0, "{group} {from:?} {to:?}");
    }
    let in_span = Scope {
        group: Some("orders".into()),
        diverted_from: Some(3),
        diverted_to: Some(3),
        ..Scope::default()
    };
    let r = replay(&c, DLQ, &in_span, &options(true)).await.unwrap();
    assert!(r.replayed >= 1, "{r:?}");
    // The check record was replayed already: a second run does not write it again.
    let again = replay(&c, DLQ, &check_only, &options(false)).await.unwrap();
    assert_eq!((again.replayed, again.already_replayed), (0, 1));
    let back = c.read(SOURCE, 0, 0, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert!(back[0]
        .headers
        .iter()
        .all(|h| !h.key.starts_with("kafka_dlt-")));
    assert_eq!(
        back[0]
            .header(keys::REPLAY_COUNT)
            .and_then(|h| h.value.clone()),
        Some(Bytes::from_static(b"1"))
    );

    // The crash-loop record goes back to partition 2 with key, value and headers.
    let r = replay(&c, DLQ, &only(2, 0), &options(false)).await.unwrap();
    assert_eq!(r.replayed, 1);
    let task = r.task.clone().unwrap();
    let back = c.read(SOURCE, 2, 0, 10).await.unwrap();
    assert_eq!(
        (back.len(), &back[0].key, &back[0].value),
        (1, &a.key, &a.value)
    );
    assert_eq!(
        back[0].headers,
        vec![
            Header::new("traceparent", "00-1-2-01"),
            Header::new(keys::REPLAY_COUNT, "1"),
            Header::new(SOURCE_HEADER, format!("{DLQ}/2/0")),
            Header::new(TASK_HEADER, task.clone()),
        ]
    );
    if let Some(out) = python(CONSUME_PY, &[&b.addr(), SOURCE, "2", "1"]) {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["key"], "order-17");
        assert_eq!(
            v["headers"],
            serde_json::json!([
                ["traceparent", "00-1-2-01"],
                ["__quarantine.replay.count", "1"],
                ["__quarantine.replay.source", format!("{DLQ}/2/0")],
                ["__quarantine.replay.task", task],
            ])
        );
    }

    // It keeps failing: dead-lettered and replayed again until the limit stops it.
    let mut at = back[0].clone();
    let mut replays = 1;
    for _ in 0..10 {
        let (p, off) = divert(
            &c,
            &at,
            2,
            at.offset,
            Reason::CrashLoop,
            HeaderStyle::Connect,
        )
        .await;
        let scope = Scope {
            to_offset: Some(off),
            ..only(p, off)
        };
        let r = replay(&c, DLQ, &scope, &options(false)).await.unwrap();
        match (r.replayed, r.refused) {
            (1, 0) => {
                replays += 1;
                let t = &r.targets[&(SOURCE.to_string(), 2)];
                let next = c.read(SOURCE, 2, t.first_offset.unwrap(), 1).await.unwrap();
                at = next[0].clone();
                let count = at.header(keys::REPLAY_COUNT).and_then(|h| h.value.clone());
                assert_eq!(count, Some(Bytes::from(replays.to_string())));
            }
            (0, 1) => break,
            other => panic!("unexpected {other:?}: {r:?}"),
        }
    }
    assert_eq!(replays, 3, "replayed exactly max-replays times");
}

#[tokio::test]
async fn replay_to_another_topic_and_refuses_missing_targets() {
    let Some(b) = Broker::start() else { return };
    let c = setup(&b).await;
    c.create_topic("orders.retry", 1, 1, &[]).await.unwrap();
    let (p, off) = divert(
        &c,
        &source("k", vec![]),
        2,
        0,
        Reason::Stalled,
        HeaderStyle::Kip1191,
    )
    .await;
    let mut to = options(false);
    to.to = Some("orders.retry".into());
    let r = replay(&c, DLQ, &only(p, off), &to).await.unwrap();
    assert_eq!(r.replayed, 1, "{r:?}");
    assert!(
        r.targets.contains_key(&("orders.retry".to_string(), 0)),
        "{r:?}"
    );
    assert_eq!(c.read("orders.retry", 0, 0, 10).await.unwrap().len(), 1);

    let (p, off) = divert(
        &c,
        &source("k2", vec![]),
        2,
        1,
        Reason::Stalled,
        HeaderStyle::Kip1191,
    )
    .await;
    to.to = Some("gone.topic".into());
    let r = replay(&c, DLQ, &only(p, off), &to).await.unwrap();
    assert_eq!(r.state, "failed");
    assert!(
        r.error.as_deref().unwrap_or("").contains("gone.topic"),
        "{r:?}"
    );
    assert_eq!(r.exit_code(), 1);
    assert!(matches!(
        read_dlq(&c, "no.such.dlq", &Scope::default()).await,
        Err(ToolError::Cluster(_))
    ));
}

fn quarantine(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quarantine"))
        .args(args)
        .output()
        .expect("run quarantine");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_inspects_counts_and_dry_runs() {
    let Some(b) = Broker::start() else { return };
    let c = setup(&b).await;
    divert(
        &c,
        &source("order-17", vec![]),
        1,
        4,
        Reason::CrashLoop,
        HeaderStyle::Connect,
    )
    .await;
    let addr = b.addr();

    let (code, out) = quarantine(&["dlq", "inspect", DLQ, "--bootstrap", &addr, "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["origin"]["topic"], SOURCE);
    assert_eq!(v["origin"]["partition"], 1);
    assert_eq!(v["reason"], "crash-loop");
    assert!(v.get("value").is_none(), "payload hidden by default");

    let (code, out) = quarantine(&["dlq", "inspect", DLQ, "--bootstrap", &addr]);
    assert_eq!(code, 0);
    assert!(
        out.contains("origin:  order.confirmed[1]@4  group=orders"),
        "{out}"
    );
    assert!(!out.contains("couponId"), "payload hidden: {out}");
    let (_, shown) = quarantine(&[
        "dlq",
        "inspect",
        DLQ,
        "--bootstrap",
        &addr,
        "--show-payload",
    ]);
    assert!(shown.contains("couponId"), "{shown}");

    let (code, out) = quarantine(&["dlq", "stats", DLQ, "--bootstrap", &addr]);
    assert_eq!(code, 0);
    assert!(out.contains("crash-loop"), "{out}");

    let (code, out) = quarantine(&["dlq", "replay", DLQ, "--bootstrap", &addr, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would replay"), "{out}");
    assert!(c.read(SOURCE, 1, 0, 10).await.unwrap().is_empty());

    let (code, _) = quarantine(&["dlq", "stats", "no.such.dlq", "--bootstrap", &addr]);
    assert_eq!(code, 1);
}

#[test]
fn the_binary_needs_a_way_to_the_cluster() {
    assert_eq!(quarantine(&["dlq", "stats", DLQ]).0, 64);
    assert_eq!(
        quarantine(&["dlq", "stats", DLQ, "--bootstrap", "nohost"]).0,
        64
    );
    assert_eq!(
        quarantine(&["dlq", "stats", DLQ, "--config", "/nonexistent/q.yaml"]).0,
        64
    );
}
