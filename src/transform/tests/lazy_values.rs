//! Lazily parsed values: an object key or value is split into top-level fields and only
//! the fields a transform touches are parsed. Untouched fields come out byte for byte,
//! the rest as `serde_json` writes it, and what is accepted or refused (with which
//! message) is exactly what a full parse accepts or refuses.

use super::support::{compile, record, run, single};
use crate::transform::{Outcome, Pipelines, Stage};

/// MaskField on `email`, InsertField of a static field, ReplaceField renaming
/// `amount` to `total`: the chain the proxy benchmark runs.
const CHAIN: &str = r#"
pipelines:
- topics: [orders]
  config:
    transforms: mask,insert,rename
    transforms.mask.type: MaskField$Value
    transforms.mask.fields: email
    transforms.insert.type: InsertField$Value
    transforms.insert.static.field: source
    transforms.insert.static.value: quarantine
    transforms.rename.type: ReplaceField$Value
    transforms.rename.renames: amount:total
    errors.tolerance: all
"#;

/// Run `pipelines` over a value; the value after it as text (the pass must change it).
fn changed_value(pipelines: &Pipelines, value: &str) -> String {
    let mut rec = record(Some(r#"{"id":7}"#), Some(value), &[]);
    let outcome = run(pipelines, &mut rec);
    assert!(
        matches!(
            outcome,
            Outcome::Pass {
                changed: true,
                unverified: None
            }
        ),
        "{value}: {outcome:?}"
    );
    assert_eq!(
        rec.key.as_deref(),
        Some(&br#"{"id":7}"#[..]),
        "key untouched"
    );
    String::from_utf8(rec.value.map(|b| b.to_vec()).unwrap_or_default()).expect("UTF-8 output")
}

/// The message of a TRANSFORMATION failure.
fn failure(pipelines: &Pipelines, value: &str) -> String {
    let mut rec = record(None, Some(value), &[]);
    let original = rec.clone();
    let outcome = run(pipelines, &mut rec);
    assert_eq!(rec, original, "{value}: a failed record stays as it came");
    let Outcome::Failed(f) = outcome else {
        panic!("{value}: expected a failure, got {outcome:?}");
    };
    assert_eq!(f.stage, Stage::Transformation, "{value}");
    f.message
}

#[test]
fn untouched_fields_are_copied_byte_for_byte() {
    let p = compile(CHAIN);
    let padding = "x".repeat(900);
    let cases = [
        (
            format!(r#"{{"id":1,"email":"a@b.c","amount":12.50,"padding":"{padding}"}}"#),
            format!(
                r#"{{"id":1,"email":"","total":12.50,"padding":"{padding}","source":"quarantine"}}"#
            ),
        ),
        // Escapes, raw unicode, odd number forms and whitespace inside values stay.
        (
            r#"{"note":"tab\there \"q\" \u00e9 \ud83d\ude00 \\ \/","ü":"ünï 😀","n":1e2,"m":-0.0,"o":{ "x" : [ 1 , 2 ] },"email":"x"}"#.to_string(),
            r#"{"note":"tab\there \"q\" \u00e9 \ud83d\ude00 \\ \/","ü":"ünï 😀","n":1e2,"m":-0.0,"o":{ "x" : [ 1 , 2 ] },"email":"","source":"quarantine"}"#.to_string(),
        ),
        // Whitespace between fields goes; keys are written as serde_json writes them.
        (
            " {\n \"a\\u0062\" : true ,\t\"amount\" :\r3 , \"email\" : null } ".to_string(),
            r#"{"ab":true,"total":3,"email":null,"source":"quarantine"}"#.to_string(),
        ),
        // The last of duplicate keys wins, at the place of the first (as in a parsed Map).
        (
            r#"{"email":"a","amount":1,"email":"bb"}"#.to_string(),
            r#"{"email":"","total":1,"source":"quarantine"}"#.to_string(),
        ),
        (
            "{}".to_string(),
            r#"{"source":"quarantine"}"#.to_string(),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(changed_value(&p, &input), want, "{input}");
    }
}

#[test]
fn nothing_changed_keeps_the_bytes() {
    let p = single("MaskField$Value", &[("fields", "email,absent")]);
    for value in [
        r#"{ "email" : "" , "n" : 1.0e0 }"#,
        r#"{"email":"","pad":"\u00e9"}"#,
    ] {
        let mut rec = record(None, Some(value), &[]);
        assert_eq!(run(&p, &mut rec), Outcome::unchanged(), "{value}");
        assert_eq!(rec.value.as_deref(), Some(value.as_bytes()));
    }
}

#[test]
fn nested_paths_edit_only_their_field() {
    let v2 = ("field.syntax.version", "V2");
    let keep = r#""pad":"\u00e9 x","n":1.50"#;
    let cases: Vec<(Pipelines, String, String)> = vec![
        (
            single("MaskField$Value", &[("fields", "card.number"), v2]),
            format!(r#"{{{keep},"card":{{ "number" : "4111", "exp":"12/30" }}}}"#),
            format!(r#"{{{keep},"card":{{"number":"","exp":"12/30"}}}}"#),
        ),
        (
            single("Cast$Value", &[("spec", "a.b:int32"), v2]),
            format!(r#"{{"a":{{"b":"7","c":"\u00e9"}},{keep}}}"#),
            format!(r#"{{"a":{{"b":7,"c":"é"}},{keep}}}"#),
        ),
        (
            single(
                "HeaderFrom$Value",
                &[
                    ("fields", "a.b"),
                    ("headers", "h"),
                    ("operation", "move"),
                    v2,
                ],
            ),
            format!(r#"{{{keep},"a":{{"b":1,"c":2}}}}"#),
            format!(r#"{{{keep},"a":{{"c":2}}}}"#),
        ),
        (
            single(
                "TimestampConverter$Value",
                &[("field", "e.at"), ("target.type", "Date"), v2],
            ),
            format!(r#"{{{keep},"e":{{"at":1700000000123}}}}"#),
            format!(r#"{{{keep},"e":{{"at":1699920000000}}}}"#),
        ),
        (
            single("ExtractField$Value", &[("field", "a.b"), v2]),
            format!(r#"{{{keep},"a":{{"b":{{ "x" : "\u00e9" }}}}}}"#),
            r#"{"x":"é"}"#.to_string(),
        ),
    ];
    for (p, input, want) in cases {
        assert_eq!(changed_value(&p, &input), want, "{input}");
    }
}

#[test]
fn whole_value_transforms_mix_with_field_edits() {
    let p = compile(
        r#"
pipelines:
- topics: [orders]
  config:
    transforms: mask,flat,insert,tokey
    transforms.mask.type: MaskField$Value
    transforms.mask.fields: email
    transforms.flat.type: Flatten$Value
    transforms.insert.type: InsertField$Value
    transforms.insert.topic.field: topic
    transforms.tokey.type: ValueToKey
    transforms.tokey.fields: a.b,email
"#,
    );
    let mut rec = record(
        None,
        Some(r#"{"email":"e","a":{"b":"\u00e9"},"pad":"\/"}"#),
        &[],
    );
    assert!(matches!(
        run(&p, &mut rec),
        Outcome::Pass { changed: true, .. }
    ));
    // Flatten parsed everything, so the value is written as serde_json writes it.
    let text =
        |b: Option<bytes::Bytes>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    assert_eq!(
        text(rec.value),
        r#"{"email":"","a.b":"é","pad":"/","topic":"orders"}"#
    );
    assert_eq!(text(rec.key), r#"{"a.b":"é","email":""}"#);
}

#[test]
fn renames_onto_existing_names_behave_like_a_map() {
    let p = single("ReplaceField$Value", &[("renames", "a:b,c:a")]);
    assert_eq!(
        changed_value(&p, r#"{"a":1,"b":2,"c":3,"d":" x "}"#),
        r#"{"b":2,"a":3,"d":" x "}"#
    );
    let p = single(
        "ReplaceField$Value",
        &[("exclude", "b"), ("renames", "a:z")],
    );
    assert_eq!(
        changed_value(&p, r#"{"a":[1, 2],"b":2,"c":"\n"}"#),
        r#"{"z":[1, 2],"c":"\n"}"#
    );
}

#[test]
fn refusals_and_messages_match_a_full_parse() {
    let p = single("MaskField$Value", &[("fields", "email")]);
    let deep = |n: usize| format!(r#"{{"email":"x","a":{}0{}}}"#, "[".repeat(n), "]".repeat(n));
    let refused = [
        r#"{"email":"x","n":1e400}"#.to_string(),
        r#"{"email":"x","s":"\ud800"}"#.to_string(),
        r#"{"email":"x","s":"\q"}"#.to_string(),
        r#"{"email":"x",}"#.to_string(),
        r#"{"email":"x"} {}"#.to_string(),
        r#"{"email":"x","a":[1,]}"#.to_string(),
        r#"{"email":"x" "a":1}"#.to_string(),
        "{\"email\":\"x\",\"s\":\"a\u{1}b\"}".to_string(),
        deep(127),
    ];
    for value in &refused {
        let full = serde_json::from_str::<serde_json::Value>(value)
            .expect_err("serde_json refuses it too")
            .to_string();
        let want = format!("t (MaskField$Value): the record value is not valid JSON: {full}");
        assert_eq!(failure(&p, value), want, "{value}");
    }
    // One level less is fine, and the deep field is copied as it came.
    let ok = deep(126);
    assert_eq!(changed_value(&p, &ok), ok.replacen(r#""x""#, r#""""#, 1));
}

#[test]
fn checks_see_the_whole_value_and_transforms_stay_lazy() {
    let p = compile(
        r#"
pipelines:
- topics: [orders]
  checks:
  - type: json
  - type: json_schema
    schema: {"type": "object", "required": ["email"], "properties": {"n": {"type": "number"}}}
  config:
    transforms: mask
    transforms.mask.type: MaskField$Value
    transforms.mask.fields: email
    errors.tolerance: all
"#,
    );
    assert_eq!(
        changed_value(&p, r#"{"email":"a","n":1.0e0,"s":"\u00e9"}"#),
        r#"{"email":"","n":1.0e0,"s":"\u00e9"}"#
    );
    let mut bad = record(None, Some(r#"{"email":"a","n":"1"}"#), &[]);
    let Outcome::Failed(f) = run(&p, &mut bad) else {
        panic!("the schema check fails");
    };
    assert_eq!(f.stage, Stage::ValueConverter);
    assert_eq!(f.message, "at /n: a string is not of type number");
    let broken = r#"{"email":"a","n":1e999}"#;
    let mut rec = record(None, Some(broken), &[]);
    let Outcome::Failed(f) = run(&p, &mut rec) else {
        panic!("the JSON check fails");
    };
    let full = serde_json::from_str::<serde_json::Value>(broken).expect_err("out of range");
    assert_eq!(f.stage, Stage::ValueConverter);
    assert_eq!(
        f.message,
        format!("the record value is not valid JSON: {full}")
    );
}

#[test]
fn non_objects_are_parsed_whole() {
    let p = single("MaskField$Value", &[("fields", "email")]);
    assert!(failure(&p, r#"[{"email":"x"}]"#).ends_with("found: array"));
    let mut rec = record(None, Some(" null "), &[]);
    assert_eq!(run(&p, &mut rec), Outcome::unchanged());
    let hoist = single("HoistField$Value", &[("field", "v")]);
    assert_eq!(
        changed_value(&hoist, r#"{"a":"\u00e9"}"#),
        r#"{"v":{"a":"é"}}"#
    );
}

#[test]
fn objects_with_many_fields_are_parsed_whole() {
    let p = compile(CHAIN);
    let mut text = String::from(r#"{"email":"a","amount":1,"s":"\u00e9""#);
    for i in 0..100 {
        text.push_str(&format!(r#","f{i}":{i}"#));
    }
    text.push_str(r#","email":"bb"}"#);
    let mut want: serde_json::Value = serde_json::from_str(&text).expect("valid");
    let map = want.as_object_mut().expect("an object");
    map.insert("email".to_string(), "".into());
    map.insert("source".to_string(), "quarantine".into());
    let total = map.shift_remove("amount").expect("amount");
    let mut renamed = serde_json::Map::new();
    renamed.insert(
        "email".to_string(),
        map.shift_remove("email").expect("email"),
    );
    renamed.insert("total".to_string(), total);
    renamed.extend(std::mem::take(map));
    assert_eq!(
        changed_value(&p, &text),
        serde_json::Value::Object(renamed).to_string()
    );
}
