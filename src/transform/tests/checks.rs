//! The converter-stage checks: valid JSON, JSON Schema from a file or inline, and the
//! schema-registry wire format with allowed ids (the registry itself is tested in
//! `registry_client`).

use super::support::{compile, record, run};
use crate::transform::{Outcome, Stage, DATA_EXCEPTION, SERIALIZATION_EXCEPTION};

fn with_checks(checks: &str, tolerance: &str) -> crate::transform::Pipelines {
    compile(&format!(
        "pipelines:\n- topics: [orders]\n  config:\n    errors.tolerance: {tolerance}\n  checks:\n{checks}"
    ))
}

/// (name, key, value, expected: None = pass unchanged, Some((stage, exception, text)))
type Row = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<(Stage, &'static str, &'static str)>,
);

fn check_rows(checks: &str, rows: &[Row]) {
    let p = with_checks(checks, "all");
    for (name, key, value, want) in rows {
        let mut rec = record(*key, *value, &[]);
        let original = rec.clone();
        let outcome = run(&p, &mut rec);
        assert_eq!(rec, original, "{name}: checks never change a record");
        match want {
            None => assert_eq!(outcome, Outcome::unchanged(), "{name}"),
            Some((stage, exception, text)) => {
                let Outcome::Failed(f) = outcome else {
                    panic!("{name}: expected a failure, got {outcome:?}");
                };
                assert_eq!((f.stage, f.exception_class), (*stage, *exception), "{name}");
                assert!(
                    f.message.contains(text),
                    "{name}: {:?} lacks {text:?}",
                    f.message
                );
            }
        }
    }
}

#[test]
fn json_check_on_value_and_key() {
    let checks = "    - type: json\n    - type: json\n      on: key\n";
    check_rows(
        checks,
        &[
            ("valid", Some(r#""k""#), Some(r#"{"a":"ünï"}"#), None),
            ("tombstone and null key", None, None, None),
            (
                "bad value",
                Some("1"),
                Some("{\"a\":"),
                Some((
                    Stage::ValueConverter,
                    DATA_EXCEPTION,
                    "the record value is not valid JSON",
                )),
            ),
            (
                "bad key",
                Some("k-1"),
                Some("{}"),
                Some((
                    Stage::KeyConverter,
                    DATA_EXCEPTION,
                    "the record key is not valid JSON",
                )),
            ),
            (
                "binary",
                None,
                Some("\u{0}\u{ff}"),
                Some((Stage::ValueConverter, DATA_EXCEPTION, "not valid JSON")),
            ),
        ],
    );
}

#[test]
fn json_schema_from_file() {
    let checks = "    - type: json_schema\n      file: order.schema.json\n";
    check_rows(
        checks,
        &[
            (
                "valid",
                None,
                Some(r#"{"orderId":"o1","couponId":"c","amount":3.5}"#),
                None,
            ),
            (
                "missing coupon",
                None,
                Some(r#"{"orderId":"o1","amount":3}"#),
                Some((
                    Stage::ValueConverter,
                    DATA_EXCEPTION,
                    "required property couponId is missing",
                )),
            ),
            (
                "wrong type",
                None,
                Some(r#"{"orderId":"o1","couponId":"c","amount":"lots"}"#),
                Some((
                    Stage::ValueConverter,
                    DATA_EXCEPTION,
                    "at /amount: a string is not of type number",
                )),
            ),
            (
                "nested",
                None,
                Some(r#"{"orderId":"o1","couponId":"c","amount":1,"customer":{}}"#),
                Some((
                    Stage::ValueConverter,
                    DATA_EXCEPTION,
                    "at /customer: required property email is missing",
                )),
            ),
            (
                "not JSON",
                None,
                Some("orderId=o1"),
                Some((Stage::ValueConverter, DATA_EXCEPTION, "not valid JSON")),
            ),
            ("tombstone", None, None, None),
        ],
    );
}

#[test]
fn json_schema_messages_hide_values_unless_allowed() {
    let checks = "    - type: json_schema\n      file: order.schema.json\n";
    let value = r#"{"orderId":"o1","couponId":"c","amount":"secret-amount"}"#;
    for (include, shows) in [("false", false), ("true", true)] {
        let p = compile(&format!(
            "pipelines:\n- topics: [orders]\n  config:\n    errors.tolerance: all\n    errors.log.include.messages: {include}\n  checks:\n{checks}"
        ));
        let mut rec = record(None, Some(value), &[]);
        let Outcome::Failed(f) = run(&p, &mut rec) else {
            panic!("expected a failure");
        };
        assert_eq!(f.message.contains("secret-amount"), shows, "{}", f.message);
    }
}

#[test]
fn inline_json_schema_draft7() {
    let checks = "    - type: json_schema\n      on: key\n      schema:\n        $schema: http://json-schema.org/draft-07/schema#\n        type: integer\n";
    check_rows(
        checks,
        &[
            ("ok", Some("12"), Some("x"), None),
            (
                "string key",
                Some(r#""12""#),
                Some("x"),
                Some((
                    Stage::KeyConverter,
                    DATA_EXCEPTION,
                    "a string is not of type integer",
                )),
            ),
        ],
    );
}

#[test]
fn wire_format_with_allowed_ids() {
    let checks = "    - type: schema_registry\n      allowed_ids: [7, 300]\n";
    check_rows(
        checks,
        &[
            (
                "allowed id 7",
                None,
                Some("\u{0}\u{0}\u{0}\u{0}\u{7}payload"),
                None,
            ),
            (
                "allowed id 300",
                None,
                Some("\u{0}\u{0}\u{0}\u{1}\u{2c}"),
                None,
            ),
            (
                "other id",
                None,
                Some("\u{0}\u{0}\u{0}\u{0}\u{8}{}"),
                Some((
                    Stage::ValueConverter,
                    SERIALIZATION_EXCEPTION,
                    "schema id 8 of the record value is not one of the allowed ids",
                )),
            ),
            (
                "plain JSON",
                None,
                Some(r#"{"a":1}"#),
                Some((
                    Stage::ValueConverter,
                    SERIALIZATION_EXCEPTION,
                    "Unknown magic byte",
                )),
            ),
            (
                "too short",
                None,
                Some("\u{0}\u{0}"),
                Some((
                    Stage::ValueConverter,
                    SERIALIZATION_EXCEPTION,
                    "2 bytes, shorter than the 5-byte",
                )),
            ),
            ("tombstone", None, None, None),
        ],
    );
}

#[test]
fn checks_run_before_transforms_and_share_the_parse() {
    // The JSON Schema check sees the original value; the transform then rewrites it.
    let p = compile(
        "pipelines:\n- topics: [orders]\n  config:\n    errors.tolerance: all\n    transforms: m\n    transforms.m.type: MaskField$Value\n    transforms.m.fields: couponId\n  checks:\n    - type: json_schema\n      file: order.schema.json\n",
    );
    let mut rec = record(
        None,
        Some(r#"{"orderId":"o1","couponId":"c","amount":1}"#),
        &[],
    );
    assert!(matches!(
        run(&p, &mut rec),
        Outcome::Pass { changed: true, .. }
    ));
    assert_eq!(
        rec.value.as_deref(),
        Some(&br#"{"orderId":"o1","couponId":"","amount":1}"#[..])
    );
}
