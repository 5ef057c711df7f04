//! Table-driven tests of every transform: good input, bad input (non-JSON, wrong type,
//! missing field), tombstones, nested paths and unicode.

use super::support::{headers, json, record, run, single};
use crate::transform::{Outcome, Stage};

enum Want {
    /// Pass, changed, value serializes exactly to this (compacted) JSON, key order included.
    Value(&'static str),
    /// Pass, changed, value became a Kafka null.
    ValueNull,
    /// Pass, changed, key serializes exactly to this JSON.
    Key(&'static str),
    /// Pass, changed, headers are exactly these.
    Headers(&'static [(&'static str, Option<&'static str>)]),
    /// Pass without any change.
    Unchanged,
    /// TRANSFORMATION failure whose message contains this; record untouched.
    Fail(&'static str),
}

struct Case {
    name: &'static str,
    ty: &'static str,
    props: &'static [(&'static str, &'static str)],
    key: Option<&'static str>,
    value: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    want: Want,
}

const fn case(
    name: &'static str,
    ty: &'static str,
    props: &'static [(&'static str, &'static str)],
    value: Option<&'static str>,
    want: Want,
) -> Case {
    Case {
        name,
        ty,
        props,
        key: Some(r#"{"id":7}"#),
        value,
        headers: &[],
        want,
    }
}

fn compact(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .expect("expected JSON parses")
        .to_string()
}

fn check(cases: &[Case]) {
    for c in cases {
        let pipelines = single(c.ty, c.props);
        let mut rec = record(c.key, c.value, c.headers);
        let original = rec.clone();
        let outcome = run(&pipelines, &mut rec);
        let name = c.name;
        match &c.want {
            Want::Unchanged => {
                assert_eq!(outcome, Outcome::unchanged(), "{name}");
                assert_eq!(rec, original, "{name}");
            }
            Want::Fail(part) => {
                let Outcome::Failed(f) = &outcome else {
                    panic!("{name}: expected a failure, got {outcome:?}");
                };
                assert_eq!(f.stage, Stage::Transformation, "{name}");
                assert!(f.tolerated, "{name}");
                assert!(
                    f.message.contains(part),
                    "{name}: {:?} lacks {part:?}",
                    f.message
                );
                assert_eq!(
                    f.exception_class,
                    "org.apache.kafka.connect.errors.DataException"
                );
                assert_eq!(rec, original, "{name}: a failed record stays as it came");
            }
            want => {
                assert!(
                    matches!(
                        outcome,
                        Outcome::Pass {
                            changed: true,
                            unverified: None
                        }
                    ),
                    "{name}: {outcome:?}"
                );
                match want {
                    Want::Value(v) => {
                        let got = rec
                            .value
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned());
                        assert_eq!(got.as_deref(), Some(compact(v).as_str()), "{name}");
                    }
                    Want::ValueNull => assert_eq!(rec.value, None, "{name}"),
                    Want::Key(k) => {
                        let got = rec
                            .key
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned());
                        assert_eq!(got.as_deref(), Some(compact(k).as_str()), "{name}");
                        assert_eq!(rec.value, original.value, "{name}: value untouched");
                    }
                    Want::Headers(h) => {
                        let want: Vec<(String, Option<String>)> = h
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                            .collect();
                        assert_eq!(headers(&rec), want, "{name}");
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
}

#[test]
fn insert_field() {
    const ALL: &[(&str, &str)] = &[
        ("topic.field", "t"),
        ("partition.field", "p"),
        ("offset.field", "o!"),
        ("timestamp.field", "ts?"),
        ("static.field", "s"),
        ("static.value", "ünï"),
    ];
    check(&[
        case(
            "all fields",
            "InsertField$Value",
            ALL,
            Some(r#"{"a":1}"#),
            Want::Value(r#"{"a":1,"t":"orders","p":3,"o":42,"ts":1700000000123,"s":"ünï"}"#),
        ),
        case(
            "long class name",
            "org.apache.kafka.connect.transforms.InsertField$Value",
            &[("topic.field", "a")],
            Some(r#"{"a":1,"b":2}"#),
            Want::Value(r#"{"a":"orders","b":2}"#),
        ),
        Case {
            key: Some(r#"{"k":1}"#),
            ..case(
                "key variant",
                "InsertField$Key",
                &[("static.field", "s"), ("static.value", "v")],
                Some("{}"),
                Want::Key(r#"{"k":1,"s":"v"}"#),
            )
        },
        case(
            "tombstone passes",
            "InsertField$Value",
            ALL,
            None,
            Want::Unchanged,
        ),
        case(
            "json null passes",
            "InsertField$Value",
            ALL,
            Some("null"),
            Want::Unchanged,
        ),
        case(
            "not JSON",
            "InsertField$Value",
            ALL,
            Some("{oops"),
            Want::Fail("not valid JSON"),
        ),
        case(
            "array",
            "InsertField$Value",
            ALL,
            Some("[1]"),
            Want::Fail("found: array"),
        ),
        case(
            "string",
            "InsertField$Value",
            ALL,
            Some(r#""x""#),
            Want::Fail("found: string"),
        ),
    ]);
}

#[test]
fn replace_field() {
    check(&[
        case(
            "exclude",
            "ReplaceField$Value",
            &[("exclude", "b, c")],
            Some(r#"{"a":1,"b":2,"c":3,"d":4}"#),
            Want::Value(r#"{"a":1,"d":4}"#),
        ),
        case(
            "include",
            "ReplaceField$Value",
            &[("include", "d,a")],
            Some(r#"{"a":1,"b":2,"d":4}"#),
            Want::Value(r#"{"a":1,"d":4}"#),
        ),
        case(
            "renames keep order",
            "ReplaceField$Value",
            &[("renames", "a:z,ü:u")],
            Some(r#"{"a":1,"ü":2,"c":3}"#),
            Want::Value(r#"{"z":1,"u":2,"c":3}"#),
        ),
        case(
            "deprecated blacklist",
            "ReplaceField$Value",
            &[("blacklist", "a")],
            Some(r#"{"a":1,"b":2}"#),
            Want::Value(r#"{"b":2}"#),
        ),
        case(
            "nothing to do",
            "ReplaceField$Value",
            &[("exclude", "x")],
            Some(r#"{"a":1}"#),
            Want::Unchanged,
        ),
        case(
            "number",
            "ReplaceField$Value",
            &[("exclude", "x")],
            Some("5"),
            Want::Fail("found: integer"),
        ),
        case(
            "tombstone",
            "ReplaceField$Value",
            &[("exclude", "x")],
            None,
            Want::Unchanged,
        ),
    ]);
}

#[test]
fn mask_field() {
    check(&[
        case(
            "type defaults",
            "MaskField$Value",
            &[("fields", "s,i,f,b,l,m,n")],
            Some(r#"{"s":"x","i":5,"f":1.5,"b":true,"l":[1],"m":{"a":1},"n":null,"keep":"y"}"#),
            Want::Value(r#"{"s":"","i":0,"f":0.0,"b":false,"l":[],"m":{},"n":null,"keep":"y"}"#),
        ),
        case(
            "string replacement",
            "MaskField$Value",
            &[("fields", "email"), ("replacement", "****")],
            Some(r#"{"email":"ä@b.c"}"#),
            Want::Value(r#"{"email":"****"}"#),
        ),
        case(
            "numeric replacement",
            "MaskField$Value",
            &[("fields", "n"), ("replacement", "-1")],
            Some(r#"{"n":1234}"#),
            Want::Value(r#"{"n":-1}"#),
        ),
        case(
            "replacement not a number",
            "MaskField$Value",
            &[("fields", "n"), ("replacement", "xx")],
            Some(r#"{"n":1234}"#),
            Want::Fail("Cannot mask field n of type integer"),
        ),
        case(
            "replacement on boolean",
            "MaskField$Value",
            &[("fields", "b"), ("replacement", "x")],
            Some(r#"{"b":true}"#),
            Want::Fail("of type boolean"),
        ),
        case(
            "nested with V2",
            "MaskField$Value",
            &[("fields", "card.number"), ("field.syntax.version", "V2")],
            Some(r#"{"card":{"number":"4111","exp":"12/30"}}"#),
            Want::Value(r#"{"card":{"number":"","exp":"12/30"}}"#),
        ),
        case(
            "dotted name with V1",
            "MaskField$Value",
            &[("fields", "card.number")],
            Some(r#"{"card.number":"4111","card":{"number":"4111"}}"#),
            Want::Value(r#"{"card.number":"","card":{"number":"4111"}}"#),
        ),
        case(
            "missing field",
            "MaskField$Value",
            &[("fields", "nope")],
            Some(r#"{"a":1}"#),
            Want::Unchanged,
        ),
        case(
            "not an object",
            "MaskField$Value",
            &[("fields", "a")],
            Some("[]"),
            Want::Fail("found: array"),
        ),
        case(
            "not JSON",
            "MaskField$Value",
            &[("fields", "a")],
            Some("\u{0}\u{1}"),
            Want::Fail("not valid JSON"),
        ),
        Case {
            key: Some(r#"{"id":7,"pii":"x"}"#),
            ..case(
                "key",
                "MaskField$Key",
                &[("fields", "pii")],
                Some("{}"),
                Want::Key(r#"{"id":7,"pii":""}"#),
            )
        },
    ]);
}

#[test]
fn value_to_key_extract_and_hoist() {
    check(&[
        case(
            "value to key",
            "ValueToKey",
            &[("fields", "id,region")],
            Some(r#"{"region":"eu","id":9,"x":1}"#),
            Want::Key(r#"{"id":9,"region":"eu"}"#),
        ),
        case(
            "value to key missing field is null",
            "ValueToKey",
            &[("fields", "id,nope")],
            Some(r#"{"id":9}"#),
            Want::Key(r#"{"id":9,"nope":null}"#),
        ),
        case(
            "value to key on array",
            "ValueToKey",
            &[("fields", "id")],
            Some("[1]"),
            Want::Fail("found: array"),
        ),
        case(
            "value to key tombstone",
            "ValueToKey",
            &[("fields", "id")],
            None,
            Want::Unchanged,
        ),
        case(
            "extract",
            "ExtractField$Value",
            &[("field", "after")],
            Some(r#"{"before":1,"after":{"a":"ü"}}"#),
            Want::Value(r#"{"a":"ü"}"#),
        ),
        case(
            "extract nested V2",
            "ExtractField$Value",
            &[("field", "a.b"), ("field.syntax.version", "v2")],
            Some(r#"{"a":{"b":[1,2]}}"#),
            Want::Value("[1,2]"),
        ),
        case(
            "extract missing gives null",
            "ExtractField$Value",
            &[("field", "nope")],
            Some(r#"{"a":1}"#),
            Want::ValueNull,
        ),
        case(
            "extract from string",
            "ExtractField$Value",
            &[("field", "a")],
            Some(r#""s""#),
            Want::Fail("found: string"),
        ),
        Case {
            key: Some(r#"{"id":7}"#),
            ..case(
                "extract key",
                "ExtractField$Key",
                &[("field", "id")],
                Some("{}"),
                Want::Key("7"),
            )
        },
        case(
            "hoist",
            "HoistField$Value",
            &[("field", "payload")],
            Some(r#""ünï""#),
            Want::Value(r#"{"payload":"ünï"}"#),
        ),
        case(
            "hoist object",
            "HoistField$Value",
            &[("field", "p")],
            Some(r#"{"a":1}"#),
            Want::Value(r#"{"p":{"a":1}}"#),
        ),
        case(
            "hoist not JSON",
            "HoistField$Value",
            &[("field", "p")],
            Some("plain text"),
            Want::Fail("not valid JSON"),
        ),
        case(
            "hoist tombstone",
            "HoistField$Value",
            &[("field", "p")],
            None,
            Want::Unchanged,
        ),
    ]);
}

#[test]
fn flatten() {
    check(&[
        case(
            "nested",
            "Flatten$Value",
            &[],
            Some(r#"{"a":{"b":{"c":1},"d":[{"x":1}]},"e":null,"f":{}}"#),
            Want::Value(r#"{"a.b.c":1,"a.d":[{"x":1}],"e":null}"#),
        ),
        case(
            "delimiter",
            "Flatten$Value",
            &[("delimiter", "_")],
            Some(r#"{"ü":{"ö":1},"z":2}"#),
            Want::Value(r#"{"ü_ö":1,"z":2}"#),
        ),
        case(
            "already flat",
            "Flatten$Value",
            &[],
            Some(r#"{"a":1}"#),
            Want::Unchanged,
        ),
        case(
            "scalar",
            "Flatten$Value",
            &[],
            Some("1.5"),
            Want::Fail("found: number"),
        ),
    ]);
}

#[test]
fn cast() {
    check(&[
        case(
            "whole value",
            "Cast$Value",
            &[("spec", "int32")],
            Some(r#""42""#),
            Want::Value("42"),
        ),
        case(
            "fields",
            "Cast$Value",
            &[("spec", "a:string,b:boolean,c:float64,d:int8")],
            Some(r#"{"a":12,"b":"TRUE","c":"2.5","d":300,"e":"keep"}"#),
            Want::Value(r#"{"a":"12","b":true,"c":2.5,"d":44,"e":"keep"}"#),
        ),
        case(
            "nested V2",
            "Cast$Value",
            &[("spec", "a.b:int64"), ("field.syntax.version", "V2")],
            Some(r#"{"a":{"b":"7"}}"#),
            Want::Value(r#"{"a":{"b":7}}"#),
        ),
        case(
            "missing field",
            "Cast$Value",
            &[("spec", "x:int32")],
            Some(r#"{"a":1}"#),
            Want::Unchanged,
        ),
        case(
            "wrong type",
            "Cast$Value",
            &[("spec", "a:int32")],
            Some(r#"{"a":"twelve"}"#),
            Want::Fail("field a: cannot cast string to int32"),
        ),
        case(
            "object",
            "Cast$Value",
            &[("spec", "a:string")],
            Some(r#"{"a":{"b":1}}"#),
            Want::Fail("does not support casting from object"),
        ),
        case(
            "fields on array",
            "Cast$Value",
            &[("spec", "a:string")],
            Some("[]"),
            Want::Fail("found: array"),
        ),
    ]);
}

#[test]
fn timestamp_converter() {
    const TO_STRING: &[(&str, &str)] = &[
        ("target.type", "string"),
        ("field", "at"),
        ("format", "yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
    ];
    const TO_UNIX_S: &[(&str, &str)] = &[
        ("target.type", "unix"),
        ("field", "at"),
        ("format", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"),
        ("unix.precision", "seconds"),
    ];
    check(&[
        case(
            "unix to string",
            "TimestampConverter$Value",
            TO_STRING,
            Some(r#"{"at":1700000000123}"#),
            Want::Value(r#"{"at":"2023-11-14T22:13:20.123+0000"}"#),
        ),
        case(
            "string to unix seconds",
            "TimestampConverter$Value",
            TO_UNIX_S,
            Some(r#"{"at":"2023-11-14T23:13:20.999+01:00"}"#),
            Want::Value(r#"{"at":1700000000}"#),
        ),
        case(
            "to Date",
            "TimestampConverter$Value",
            &[("target.type", "Date"), ("field", "at")],
            Some(r#"{"at":1700000000123}"#),
            Want::Value(r#"{"at":1699920000000}"#),
        ),
        case(
            "to Time",
            "TimestampConverter$Value",
            &[("target.type", "Time"), ("field", "at")],
            Some(r#"{"at":1700000000123}"#),
            Want::Value(r#"{"at":80000123}"#),
        ),
        case(
            "whole value micros to Timestamp",
            "TimestampConverter$Value",
            &[
                ("target.type", "Timestamp"),
                ("unix.precision", "microseconds"),
            ],
            Some("1700000000123456"),
            Want::Value("1700000000123"),
        ),
        case(
            "missing field",
            "TimestampConverter$Value",
            TO_STRING,
            Some(r#"{"x":1}"#),
            Want::Unchanged,
        ),
        case(
            "bad string",
            "TimestampConverter$Value",
            TO_UNIX_S,
            Some(r#"{"at":"yesterday"}"#),
            Want::Fail("does not match the date format"),
        ),
        case(
            "boolean",
            "TimestampConverter$Value",
            TO_STRING,
            Some(r#"{"at":true}"#),
            Want::Fail("does not support a boolean"),
        ),
        case(
            "fraction",
            "TimestampConverter$Value",
            TO_STRING,
            Some(r#"{"at":1.5}"#),
            Want::Fail("must be an integer"),
        ),
    ]);
}

#[test]
fn headers_transforms() {
    check(&[
        Case {
            headers: &[("a", "1")],
            ..case(
                "insert header",
                "InsertHeader",
                &[("header", "source"), ("value.literal", "ünï")],
                Some("not json either"),
                Want::Headers(&[("a", Some("1")), ("source", Some("ünï"))]),
            )
        },
        Case {
            headers: &[("a", "1"), ("b", "2"), ("a", "3")],
            ..case(
                "drop headers",
                "DropHeaders",
                &[("headers", "a,c")],
                None,
                Want::Headers(&[("b", Some("2"))]),
            )
        },
        Case {
            headers: &[("b", "2")],
            ..case(
                "drop absent header",
                "DropHeaders",
                &[("headers", "a")],
                Some("1"),
                Want::Unchanged,
            )
        },
        case(
            "header from copy",
            "HeaderFrom$Value",
            &[
                ("fields", "id,o,missing"),
                ("headers", "h_id,h_o,h_m"),
                ("operation", "copy"),
            ],
            Some(r#"{"id":"x","o":{"a":1}}"#),
            Want::Headers(&[
                ("h_id", Some("x")),
                ("h_o", Some(r#"{"a":1}"#)),
                ("h_m", None),
            ]),
        ),
        case(
            "header from move",
            "HeaderFrom$Value",
            &[("fields", "id"), ("headers", "h"), ("operation", "move")],
            Some(r#"{"id":5,"z":1}"#),
            Want::Value(r#"{"z":1}"#),
        ),
        case(
            "header from non-JSON",
            "HeaderFrom$Value",
            &[("fields", "id"), ("headers", "h"), ("operation", "copy")],
            Some("<xml/>"),
            Want::Fail("not valid JSON"),
        ),
    ]);
}

#[test]
fn header_from_move_also_writes_the_header() {
    let p = single(
        "HeaderFrom$Key",
        &[("fields", "id"), ("headers", "h"), ("operation", "move")],
    );
    let mut rec = record(Some(r#"{"id":7,"r":"eu"}"#), Some("1"), &[]);
    assert!(matches!(
        run(&p, &mut rec),
        Outcome::Pass { changed: true, .. }
    ));
    assert_eq!(json(&rec.key), Some(serde_json::json!({"r": "eu"})));
    assert_eq!(
        headers(&rec),
        vec![("h".to_string(), Some("7".to_string()))]
    );
}

#[test]
fn filter_without_predicate_drops_everything() {
    let p = single("Filter", &[]);
    let mut rec = record(None, Some("{}"), &[]);
    let original = rec.clone();
    assert_eq!(run(&p, &mut rec), Outcome::Filtered);
    assert_eq!(rec, original);
}
