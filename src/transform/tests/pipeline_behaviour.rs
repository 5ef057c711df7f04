//! Pipeline-level behaviour: matching topics and groups, predicates and negate, Filter,
//! error tolerance, and what a failure reports.

use super::support::{compile, headers, record, run, run_on};
use crate::transform::{Outcome, Stage};

const CHAIN: &str = r#"
pipelines:
- topics: [orders]
  config:
    transforms: insert,cast,mask
    transforms.insert.type: InsertField$Value
    transforms.insert.topic.field: topic
    transforms.cast.type: Cast$Value
    transforms.cast.spec: amount:float64
    transforms.mask.type: MaskField$Value
    transforms.mask.fields: email
    errors.tolerance: TOLERANCE
"#;

#[test]
fn tolerance_all_diverts_with_connect_names() {
    let p = compile(&CHAIN.replace("TOLERANCE", "all"));
    let mut rec = record(None, Some(r#"{"amount":"n/a","email":"a@b"}"#), &[]);
    let original = rec.clone();
    let Outcome::Failed(f) = run(&p, &mut rec) else {
        panic!("expected a failure");
    };
    assert!(f.tolerated);
    assert_eq!(f.stage, Stage::Transformation);
    assert_eq!(f.stage.as_str(), "TRANSFORMATION");
    assert_eq!(
        f.class_name,
        "org.apache.kafka.connect.transforms.Cast$Value"
    );
    assert_eq!(
        f.exception_class,
        "org.apache.kafka.connect.errors.DataException"
    );
    assert_eq!(
        f.message,
        "cast (Cast$Value): field amount: cannot cast string to float64: the string is not a number"
    );
    assert!(!f.message.contains("n/a"));
    assert_eq!(rec, original, "the earlier InsertField is not applied");
}

#[test]
fn tolerance_none_passes_the_record_unchanged_and_reports() {
    let p = compile(&CHAIN.replace("TOLERANCE", "none"));
    let mut rec = record(None, Some(r#"{"amount":"n/a","email":"a@b"}"#), &[]);
    let original = rec.clone();
    let outcome = run(&p, &mut rec);
    let Outcome::Failed(f) = &outcome else {
        panic!("expected a failure");
    };
    assert!(!f.tolerated);
    assert!(outcome.delivers());
    assert_eq!(rec, original);

    // Its neighbours are transformed.
    let mut good = record(None, Some(r#"{"amount":"2.5","email":"a@b"}"#), &[]);
    assert!(matches!(
        run(&p, &mut good),
        Outcome::Pass {
            changed: true,
            unverified: None
        }
    ));
    assert_eq!(
        good.value.as_deref(),
        Some(&br#"{"amount":2.5,"email":"","topic":"orders"}"#[..])
    );
}

#[test]
fn default_tolerance_is_none() {
    let p = compile("pipelines:\n- topics: [orders]\n  checks:\n  - type: json\n");
    let mut rec = record(None, Some("nope"), &[]);
    let Outcome::Failed(f) = run(&p, &mut rec) else {
        panic!("expected a failure");
    };
    assert!(!f.tolerated);
}

#[test]
fn predicates_gate_transforms() {
    let p = compile(
        r#"
pipelines:
- topic_pattern: "orders|payments-.*"
  config:
    transforms: dropTest,tag,clean
    transforms.dropTest.type: Filter
    transforms.dropTest.predicate: isTest
    transforms.tag.type: InsertHeader
    transforms.tag.header: seen
    transforms.tag.value.literal: yes
    transforms.tag.predicate: isTombstone
    transforms.tag.negate: true
    transforms.clean.type: DropHeaders
    transforms.clean.headers: trace
    transforms.clean.predicate: onPayments
    predicates: isTest,isTombstone,onPayments
    predicates.isTest.type: org.apache.kafka.connect.transforms.predicates.HasHeaderKey
    predicates.isTest.name: test
    predicates.isTombstone.type: RecordIsTombstone
    predicates.onPayments.type: TopicNameMatches
    predicates.onPayments.pattern: payments-.*
"#,
    );
    // HasHeaderKey → Filter.
    let mut rec = record(None, Some("{}"), &[("test", "1")]);
    assert_eq!(run(&p, &mut rec), Outcome::Filtered);

    // Not a tombstone → header added (negate); not payments → trace kept.
    let mut rec = record(None, Some("{}"), &[("trace", "t")]);
    assert!(matches!(
        run(&p, &mut rec),
        Outcome::Pass { changed: true, .. }
    ));
    assert_eq!(
        headers(&rec),
        vec![
            ("trace".to_string(), Some("t".to_string())),
            ("seen".to_string(), Some("yes".to_string()))
        ]
    );

    // Tombstone on payments-eu: no header added, trace dropped.
    let mut rec = record(None, None, &[("trace", "t")]);
    assert!(matches!(
        run_on(&p, "payments-eu", &mut rec),
        Outcome::Pass { changed: true, .. }
    ));
    assert!(rec.headers.is_empty());
}

#[test]
fn topics_groups_and_first_match() {
    let p = compile(
        r#"
pipelines:
- topics: [orders]
  groups: [audit]
  config: {transforms: f, transforms.f.type: Filter}
- topics: [orders, refunds]
  topic_pattern: "inv-[0-9]+"
"#,
    );
    assert!(p.applies_to("orders", Some("billing")));
    assert!(p.applies_to("orders", None));
    assert!(p.applies_to("inv-12", None));
    assert!(
        !p.applies_to("inv-12x", None),
        "patterns match the whole name"
    );
    assert!(!p.applies_to("xorders", None));
    assert!(!p.applies_to("payments", Some("audit")));
    let audit = p.for_record("orders", Some("audit")).unwrap();
    assert_eq!(audit.name(), "pipelines[0]");
    assert_eq!(
        p.for_record("orders", Some("billing")).unwrap().name(),
        "pipelines[1]"
    );
    assert_eq!(p.for_record("orders", None).unwrap().name(), "pipelines[1]");
    assert!(!p.is_empty());
}

#[test]
fn unchanged_records_are_not_reencoded() {
    let p = compile(
        "pipelines:\n- topics: [orders]\n  config:\n    transforms: m\n    transforms.m.type: MaskField$Value\n    transforms.m.fields: absent\n",
    );
    // Odd but valid formatting would be lost by a re-encode.
    let mut rec = record(None, Some("{ \"a\" : 1.0e0 }"), &[]);
    assert_eq!(run(&p, &mut rec), Outcome::unchanged());
    assert_eq!(rec.value.as_deref(), Some(&b"{ \"a\" : 1.0e0 }"[..]));
}

#[test]
fn extract_to_null_then_tombstone_predicate_sees_it() {
    let p = compile(
        r#"
pipelines:
- topics: [orders]
  config:
    transforms: x,drop
    transforms.x.type: ExtractField$Value
    transforms.x.field: after
    transforms.drop.type: Filter
    transforms.drop.predicate: t
    predicates: t
    predicates.t.type: RecordIsTombstone
"#,
    );
    let mut deleted = record(None, Some(r#"{"before":{"id":1},"after":null}"#), &[]);
    assert_eq!(run(&p, &mut deleted), Outcome::Filtered);
    let mut updated = record(None, Some(r#"{"before":null,"after":{"id":1}}"#), &[]);
    assert!(matches!(
        run(&p, &mut updated),
        Outcome::Pass { changed: true, .. }
    ));
    assert_eq!(updated.value.as_deref(), Some(&br#"{"id":1}"#[..]));
}
