//! Configuration validation: every mistake names the exact key.

use crate::transform::{ErrorHandling, Pipelines, Tolerance, TransformConfig};

fn pipeline(config_lines: &str) -> String {
    format!("pipelines:\n- topics: [orders]\n  config:\n{config_lines}")
}

fn error_of(yaml: &str) -> (String, String) {
    let config = TransformConfig::from_yaml(yaml).expect("YAML parses");
    let err = config.validate().expect_err("validation fails");
    (err.key, err.message)
}

#[test]
fn errors_name_the_key() {
    let cases: &[(String, &str, &str)] = &[
        (pipeline("    transforms: mask\n    transforms.mask.type: MaskField$Value\n"),
            r#"pipelines[0].config."transforms.mask.fields""#, "missing required property"),
        (pipeline("    transforms: m\n    transforms.m.type: MaskField$Value\n    transforms.m.fields: a\n    transforms.m.feilds: b\n"),
            r#"pipelines[0].config."transforms.m.feilds""#, "unknown property for MaskField"),
        (pipeline("    transforms: m\n    transforms.m.type: MaskFeld$Value\n"),
            r#"pipelines[0].config."transforms.m.type""#, "unknown transform type 'MaskFeld$Value'"),
        (pipeline("    transforms: m\n    transforms.m.type: MaskField\n    transforms.m.fields: a\n"),
            r#"pipelines[0].config."transforms.m.type""#, "needs a $Key or $Value variant"),
        (pipeline("    transforms: m\n    transforms.m.type: ValueToKey$Key\n    transforms.m.fields: a\n"),
            r#"pipelines[0].config."transforms.m.type""#, "has no $Key variant"),
        (pipeline("    transforms: r\n    transforms.r.type: org.apache.kafka.connect.transforms.RegexRouter\n"),
            r#"pipelines[0].config."transforms.r.type""#, "changes the topic"),
        (pipeline("    transforms: m\n"),
            r#"pipelines[0].config."transforms.m.type""#, "missing required property"),
        (pipeline("    transforms.x.type: Filter\n"),
            r#"pipelines[0].config."transforms.x.type""#, "'x' is not listed in transforms"),
        (pipeline("    transforms: f\n    transforms.f.type: Filter\n    transforms.f.predicate: p\n"),
            r#"pipelines[0].config."transforms.f.predicate""#, "'p' is not listed in predicates"),
        (pipeline("    transforms: f\n    transforms.f.type: Filter\n    transforms.f.negate: true\n"),
            r#"pipelines[0].config."transforms.f.negate""#, "needs a predicate"),
        (pipeline("    transforms: f\n    transforms.f.type: Filter\n    transforms.f.predicate: p\n    predicates: p\n    predicates.p.type: TopicNameMatches\n    predicates.p.pattern: \"(\"\n"),
            r#"pipelines[0].config."predicates.p.pattern""#, "invalid regular expression"),
        (pipeline("    predicates: p\n    predicates.p.type: IsTuesday\n"),
            r#"pipelines[0].config."predicates.p.type""#, "unknown predicate type"),
        (pipeline("    predicates: p\n    predicates.p.type: HasHeaderKey\n    predicates.p.key: x\n"),
            r#"pipelines[0].config."predicates.p.name""#, "missing required property"),
        (pipeline("    errors.tolerance: some\n"),
            r#"pipelines[0].config."errors.tolerance""#, "must be none or all"),
        (pipeline("    errors.log.enable: maybe\n"),
            r#"pipelines[0].config."errors.log.enable""#, "must be true or false"),
        (pipeline("    connector.class: io.confluent.X\n"),
            r#"pipelines[0].config."connector.class""#, "unknown key"),
        (pipeline("    transforms: a,a\n"),
            r#"pipelines[0].config."transforms""#, "listed twice"),
        (pipeline("    transforms: c\n    transforms.c.type: Cast$Value\n    transforms.c.spec: a:int128\n"),
            r#"pipelines[0].config."transforms.c.spec""#, "unknown type 'int128'"),
        (pipeline("    transforms: t\n    transforms.t.type: TimestampConverter$Value\n    transforms.t.target.type: string\n"),
            r#"pipelines[0].config."transforms.t.format""#, "missing required property"),
        (pipeline("    transforms: t\n    transforms.t.type: TimestampConverter$Value\n    transforms.t.target.type: unix\n    transforms.t.format: GG yyyy\n"),
            r#"pipelines[0].config."transforms.t.format""#, "unsupported letter 'G'"),
        (pipeline("    transforms: h\n    transforms.h.type: HeaderFrom$Value\n    transforms.h.fields: a,b\n    transforms.h.headers: a\n    transforms.h.operation: copy\n"),
            r#"pipelines[0].config."transforms.h.headers""#, "same length"),
        (pipeline("    transforms: r\n    transforms.r.type: ReplaceField$Value\n    transforms.r.renames: a-b\n"),
            r#"pipelines[0].config."transforms.r.renames""#, "old:new"),
        (pipeline("    transforms: i\n    transforms.i.type: InsertField$Value\n    transforms.i.static.field: s\n"),
            r#"pipelines[0].config."transforms.i.static.value""#, "missing required property"),
        ("pipelines:\n- topics: [a]\n- topic_pattern: \"orders-(\"\n".to_string(),
            "pipelines[1].topic_pattern", "invalid regular expression"),
        ("pipelines:\n- groups: [g]\n".to_string(), "pipelines[0].topics", "set topics, topic_pattern, or both"),
        ("pipelines:\n- topics: [a]\n  checks:\n  - type: json_schema\n".to_string(),
            "pipelines[0].checks[0].file", "exactly one of file and schema"),
        ("pipelines:\n- topics: [a]\n  checks:\n  - type: json_schema\n    schema: {type: 5}\n".to_string(),
            "pipelines[0].checks[0].schema", "invalid JSON Schema"),
        ("pipelines:\n- topics: [a]\n  checks:\n  - type: schema_registry\n".to_string(),
            "pipelines[0].checks[0].allowed_ids", "set allowed_ids, registry, or both"),
        ("pipelines:\n- topics: [a]\n  checks:\n  - type: schema_registry\n    registry: {url: \"ftp://x\"}\n".to_string(),
            "pipelines[0].checks[0].registry.url", "http:// or https://"),
        ("pipelines:\n- topics: [a]\n  dlq_mask:\n    fields: [ok, \"a..b\"]\n".to_string(),
            "pipelines[0].dlq_mask.fields[1]", "empty field name"),
    ];
    for (yaml, key, text) in cases {
        let (got_key, message) = error_of(yaml);
        assert_eq!(got_key, *key, "{yaml}");
        assert!(message.contains(text), "{yaml}\n{message:?} lacks {text:?}");
    }
}

#[test]
fn structural_mistakes_fail_to_parse() {
    for yaml in [
        "pipelines:\n- topics: [a]\n  transfroms: {}\n",
        "pipelines:\n- topics: [a]\n  checks:\n  - type: json\n    file: x\n",
        "pipelines:\n- topics: [a]\n  checks:\n  - type: xml\n",
    ] {
        assert!(TransformConfig::from_yaml(yaml).is_err(), "{yaml}");
    }
}

#[test]
fn schema_file_problems_name_the_key() {
    let config = TransformConfig::from_yaml(
        "pipelines:\n- topics: [a]\n  checks:\n  - type: json\n  - type: json_schema\n    file: does-not-exist.json\n",
    )
    .unwrap();
    assert!(config.validate().is_ok(), "validate does not read files");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/transform/testdata");
    let err = Pipelines::compile(&config, &dir).unwrap_err();
    assert_eq!(err.key, "pipelines[0].checks[1].file");
    assert!(err.message.contains("cannot read"), "{}", err.message);
}

#[test]
fn connect_style_values_in_every_yaml_shape() {
    let config = TransformConfig::from_yaml(
        r#"
pipelines:
- name: orders-cleanup
  topics: [orders]
  config:
    transforms: [mask, insert]
    transforms.mask.type: org.apache.kafka.connect.transforms.MaskField$Value
    transforms.mask.fields: [email, phone]
    transforms.insert.type: InsertField$Value
    transforms.insert.static.field: version
    transforms.insert.static.value: 2
    errors.tolerance: ALL
    errors.deadletterqueue.topic.name: orders-dlq
    errors.deadletterqueue.topic.replication.factor: 1
    errors.deadletterqueue.context.headers.enable: "false"
    errors.log.enable: true
    errors.retry.timeout: -1
"#,
    )
    .unwrap();
    let dir = std::path::Path::new(".");
    let pipelines = Pipelines::compile(&config, dir).unwrap();
    let p = pipelines.for_record("orders", None).unwrap();
    assert_eq!(p.name(), "orders-cleanup");
    assert_eq!(
        p.errors(),
        &ErrorHandling {
            tolerance: Tolerance::All,
            dead_letter_topic: Some("orders-dlq".to_string()),
            dead_letter_replication_factor: Some(1),
            context_headers: false,
            log_enable: true,
            log_include_messages: false,
            retry_timeout_ms: -1,
            retry_delay_max_ms: 60_000,
        }
    );
    let ctx = crate::transform::RecordContext {
        topic: "orders",
        partition: 0,
        group: None,
    };
    let mut rec = super::support::record(None, Some(r#"{"email":"e","phone":"p"}"#), &[]);
    p.apply(&ctx, &mut rec);
    assert_eq!(
        rec.value.as_deref(),
        Some(&br#"{"email":"","phone":"","version":"2"}"#[..])
    );
}
