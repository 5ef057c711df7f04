//! Masking of dead-letter copies.

use serde_json::json;

use super::support::{compile, json, record};
use crate::transform::{mask_for_dlq, MaskConfig, MaskReport, Unparseable};

fn mask(yaml: &str) -> MaskConfig {
    let m: MaskConfig = serde_norway::from_str(yaml).expect("mask YAML parses");
    m.validate().expect("mask is valid");
    m
}

#[test]
fn masks_drops_and_walks_arrays() {
    let m = mask(
        "fields: [email, card.number, items.iban, \"`a.b`\"]\ndrop_fields: [ssn]\nkey_fields: [user]\ndrop_headers: [authorization]\n",
    );
    let mut rec = record(
        Some(r#"{"user":"ünï","id":1}"#),
        Some(
            r#"{"email":"e@x","ssn":"1","card":{"number":"4111","exp":"1/30"},"items":[{"iban":"DE1"},{"iban":"DE2"},{"x":1}],"a.b":2,"keep":true}"#,
        ),
        &[("authorization", "Bearer t"), ("trace", "1")],
    );
    let report = mask_for_dlq(&m, &mut rec);
    assert_eq!(
        report,
        MaskReport {
            fields: 7,
            headers: 1,
            key_dropped: false,
            value_dropped: false
        }
    );
    assert_eq!(json(&rec.key), Some(json!({"user": "****", "id": 1})));
    assert_eq!(
        json(&rec.value),
        Some(
            json!({"email":"****","card":{"number":"****","exp":"1/30"},"items":[{"iban":"****"},{"iban":"****"},{"x":1}],"a.b":"****","keep":true})
        )
    );
    assert_eq!(rec.headers.len(), 1);
    assert_eq!(rec.headers[0].key, "trace");
}

#[test]
fn replacement_can_be_any_json() {
    let m = mask("fields: [n]\nreplacement: null\n");
    let mut rec = record(None, Some(r#"{"n":5}"#), &[]);
    mask_for_dlq(&m, &mut rec);
    assert_eq!(json(&rec.value), Some(json!({"n": null})));
}

#[test]
fn unparseable_values_are_dropped_by_default() {
    let m = mask("fields: [email]\n");
    assert_eq!(m.unparseable, Unparseable::Drop);
    let mut rec = record(Some("plain-key"), Some("email=a@b"), &[]);
    let report = mask_for_dlq(&m, &mut rec);
    assert!(report.value_dropped);
    assert_eq!(rec.value, None);
    assert_eq!(
        rec.key.as_deref(),
        Some(&b"plain-key"[..]),
        "no key masks: key kept"
    );

    let keep = mask("fields: [email]\nunparseable: keep\n");
    let mut rec = record(None, Some("email=a@b"), &[]);
    assert!(!mask_for_dlq(&keep, &mut rec).value_dropped);
    assert_eq!(rec.value.as_deref(), Some(&b"email=a@b"[..]));
}

#[test]
fn nothing_to_mask_keeps_bytes_exactly() {
    let m = mask("fields: [absent]\n");
    let mut rec = record(None, Some("{ \"a\": 1 }"), &[]);
    assert_eq!(mask_for_dlq(&m, &mut rec), MaskReport::default());
    assert_eq!(rec.value.as_deref(), Some(&b"{ \"a\": 1 }"[..]));
}

#[test]
fn pipelines_carry_their_mask() {
    let p = compile("pipelines:\n- topics: [orders]\n  dlq_mask:\n    drop_fields: [secret]\n");
    let pipeline = p.for_record("orders", None).unwrap();
    let mut rec = record(None, Some(r#"{"secret":1,"ok":2}"#), &[]);
    assert_eq!(pipeline.mask_for_dlq(&mut rec).fields, 1);
    assert_eq!(json(&rec.value), Some(json!({"ok": 2})));
}
