//! Unit tests of the dead-letter record format.

use bytes::Bytes;

use super::*;

fn source() -> Record {
    Record {
        offset: 1234,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"order-17")),
        value: Some(Bytes::from_static(b"{\"id\":17,\"couponId\":\"X\"}")),
        headers: vec![
            Header::new("traceparent", "00-abc-def-01"),
            Header {
                key: "nullable".into(),
                value: None,
            },
        ],
    }
}

fn origin() -> Origin {
    Origin {
        topic: "order.confirmed".into(),
        partition: 2,
        offset: 1234,
        group: "orders".into(),
        timestamp: 1_700_000_000_000,
    }
}

fn diag() -> Diagnosis {
    Diagnosis {
        stage: Stage::KafkaConsume,
        reason: Reason::CrashLoop,
        class_name: None,
        exception_class: "quarantine.PoisonRecord".into(),
        message: "delivered 3 times to group orders, never committed".into(),
        delivery_count: 3,
        first_delivery_ms: 1_700_000_001_000,
        last_delivery_ms: 1_700_000_009_000,
        diverted_ms: 1_700_000_009_500,
    }
}

fn text<'a>(r: &'a Record, key: &str) -> &'a str {
    let v = r
        .header(key)
        .and_then(|h| h.value.as_deref())
        .unwrap_or_else(|| panic!("missing header {key}"));
    std::str::from_utf8(v).unwrap()
}

fn raw<'a>(r: &'a Record, key: &str) -> &'a [u8] {
    r.header(key)
        .and_then(|h| h.value.as_deref())
        .unwrap_or_else(|| panic!("missing header {key}"))
}

fn build(style: HeaderStyle) -> Record {
    dead_letter_record(
        &source(),
        &origin(),
        &diag(),
        Some(style),
        "pod-a",
        &HeaderLimits::default(),
    )
}

#[test]
fn keeps_key_value_timestamp_and_original_headers_first() {
    for style in [
        HeaderStyle::Connect,
        HeaderStyle::Spring,
        HeaderStyle::Kip1191,
    ] {
        let r = build(style);
        let s = source();
        assert_eq!((r.key, r.value, r.timestamp), (s.key, s.value, s.timestamp));
        assert_eq!(&r.headers[..2], &s.headers[..], "{style:?}");
    }
}

#[test]
fn connect_style_writes_utf8_context_headers() {
    let r = build(HeaderStyle::Connect);
    let p = "__connect.errors.";
    assert_eq!(text(&r, &format!("{p}topic")), "order.confirmed");
    assert_eq!(text(&r, &format!("{p}partition")), "2");
    assert_eq!(text(&r, &format!("{p}offset")), "1234");
    assert_eq!(text(&r, &format!("{p}connector.name")), "quarantine");
    assert_eq!(text(&r, &format!("{p}task.id")), "pod-a");
    assert_eq!(text(&r, &format!("{p}stage")), "KAFKA_CONSUME");
    assert_eq!(text(&r, &format!("{p}class.name")), "quarantine");
    assert_eq!(
        text(&r, &format!("{p}exception.class.name")),
        "quarantine.PoisonRecord"
    );
    assert!(text(&r, &format!("{p}exception.message")).contains("3 times"));
    assert!(r.header("kafka_dlt-original-topic").is_none());
    assert!(r.header("__dlq.errors.topic").is_none());
}

#[test]
fn spring_style_writes_binary_numbers() {
    let r = build(HeaderStyle::Spring);
    assert_eq!(text(&r, "kafka_dlt-original-topic"), "order.confirmed");
    assert_eq!(raw(&r, "kafka_dlt-original-partition"), &2i32.to_be_bytes());
    assert_eq!(raw(&r, "kafka_dlt-original-offset"), &1234i64.to_be_bytes());
    assert_eq!(
        raw(&r, "kafka_dlt-original-timestamp"),
        &1_700_000_000_000i64.to_be_bytes()
    );
    assert_eq!(text(&r, "kafka_dlt-original-consumer-group"), "orders");
    assert_eq!(
        text(&r, "kafka_dlt-exception-fqcn"),
        "quarantine.PoisonRecord"
    );
    assert!(r.header("kafka_dlt-exception-message").is_some());
    assert!(r.header("__connect.errors.topic").is_none());
}

#[test]
fn kip1191_style_writes_its_headers() {
    let r = build(HeaderStyle::Kip1191);
    assert_eq!(text(&r, "__dlq.errors.topic"), "order.confirmed");
    assert_eq!(text(&r, "__dlq.errors.partition"), "2");
    assert_eq!(text(&r, "__dlq.errors.offset"), "1234");
    assert_eq!(text(&r, "__dlq.errors.group"), "orders");
    assert_eq!(text(&r, "__dlq.errors.delivery.count"), "3");
    assert!(text(&r, "__dlq.errors.message").contains("never committed"));
}

#[test]
fn quarantine_headers_are_written_in_every_style() {
    for style in [
        HeaderStyle::Connect,
        HeaderStyle::Spring,
        HeaderStyle::Kip1191,
    ] {
        let r = build(style);
        assert_eq!(text(&r, keys::GROUP), "orders");
        assert_eq!(text(&r, keys::TOPIC), "order.confirmed");
        assert_eq!(text(&r, keys::PARTITION), "2");
        assert_eq!(text(&r, keys::OFFSET), "1234");
        assert_eq!(text(&r, keys::REASON), "crash-loop");
        assert_eq!(text(&r, keys::DELIVERY_COUNT), "3");
        assert_eq!(text(&r, keys::FIRST_DELIVERY_MS), "1700000001000");
        assert_eq!(text(&r, keys::LAST_DELIVERY_MS), "1700000009000");
        assert_eq!(text(&r, keys::INSTANCE), "pod-a");
        assert_eq!(text(&r, keys::DIVERTED_MS), "1700000009500");
        assert_eq!(text(&r, keys::REPLAY_COUNT), "0");
    }
}

#[test]
fn earlier_error_headers_of_every_style_are_stripped() {
    let mut s = source();
    for key in [
        "__connect.errors.exception.stacktrace",
        "__connect.errors.topic",
        "kafka_dlt-exception-stacktrace",
        "__dlq.errors.group",
        "__streams.errors.stacktrace",
        "__quarantine.reason",
    ] {
        s.headers.push(Header::new(key, "old"));
    }
    let r = dead_letter_record(
        &s,
        &origin(),
        &diag(),
        Some(HeaderStyle::Connect),
        "pod-a",
        &HeaderLimits::default(),
    );
    assert!(r.header("__connect.errors.exception.stacktrace").is_none());
    assert!(r.header("kafka_dlt-exception-stacktrace").is_none());
    assert!(r.header("__dlq.errors.group").is_none());
    assert!(r.header("__streams.errors.stacktrace").is_none());
    assert_eq!(
        r.headers.iter().filter(|h| h.key == keys::REASON).count(),
        1
    );
    assert_eq!(
        r.headers
            .iter()
            .filter(|h| h.key == "__connect.errors.topic")
            .count(),
        1
    );
    assert!(r.headers.iter().all(|h| h.value.as_deref() != Some(b"old")));
    // Non-error headers that merely look alike stay.
    let mut s = source();
    s.headers.push(Header::new("__connect.other", "kept"));
    s.headers.push(Header::new("kafka_correlationId", "kept"));
    let r = build_from(&s, HeaderStyle::Spring);
    assert!(r.header("__connect.other").is_some());
    assert!(r.header("kafka_correlationId").is_some());
}

fn build_from(s: &Record, style: HeaderStyle) -> Record {
    dead_letter_record(
        s,
        &origin(),
        &diag(),
        Some(style),
        "pod-a",
        &HeaderLimits::default(),
    )
}

#[test]
fn long_values_are_capped_on_a_char_boundary() {
    let mut d = diag();
    d.message = "é".repeat(5000);
    d.exception_class = "x".repeat(3000);
    let limits = HeaderLimits {
        max_value_bytes: 100,
    };
    let r = dead_letter_record(
        &source(),
        &origin(),
        &d,
        Some(HeaderStyle::Connect),
        &"i".repeat(500),
        &limits,
    );
    for h in &r.headers {
        let len = h.value.as_ref().map_or(0, |v| v.len());
        assert!(len <= 100, "{} is {len} bytes", h.key);
    }
    let msg = text(&r, "__connect.errors.exception.message");
    assert!(msg.ends_with('…'));
    assert!(msg.starts_with("éé"));
    assert_eq!(cap("short", 100), "short");
    assert_eq!(cap("abcdef", 4), "a…");
}

#[test]
fn dead_lettering_again_does_not_grow_the_record() {
    let mut d = diag();
    d.message = "m".repeat(10_000);
    let size = |r: &Record| -> usize {
        r.headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum()
    };
    for style in [
        HeaderStyle::Connect,
        HeaderStyle::Spring,
        HeaderStyle::Kip1191,
    ] {
        let once = dead_letter_record(
            &source(),
            &origin(),
            &d,
            Some(style),
            "pod-a",
            &HeaderLimits::default(),
        );
        let mut again = once.clone();
        for _ in 0..5 {
            again = dead_letter_record(
                &again,
                &origin(),
                &d,
                Some(style),
                "pod-a",
                &HeaderLimits::default(),
            );
        }
        assert_eq!(size(&again), size(&once), "{style:?}");
        assert_eq!(again.headers.len(), once.headers.len());
    }
}

#[test]
fn parse_origin_round_trips_every_style() {
    for style in [
        HeaderStyle::Connect,
        HeaderStyle::Spring,
        HeaderStyle::Kip1191,
    ] {
        let r = build(style);
        let info = parse_origin(&r).expect("origin");
        assert_eq!(info.found, FoundStyle::Quarantine);
        assert_eq!(info.origin, origin());
        assert_eq!(info.reason, Some(Reason::CrashLoop));
        assert_eq!(info.delivery_count, Some(3));
        assert_eq!(info.first_delivery_ms, Some(1_700_000_001_000));
        assert_eq!(info.last_delivery_ms, Some(1_700_000_009_000));
        assert_eq!(info.diverted_ms, Some(1_700_000_009_500));
        assert_eq!(info.instance.as_deref(), Some("pod-a"));
        assert_eq!(
            info.exception_class.is_some(),
            style != HeaderStyle::Kip1191
        );
        assert!(info.message.unwrap().contains("never committed"));
        assert_eq!(info.replay_count, 0);
    }
}

#[test]
fn parse_origin_reads_other_tools_styles_alone() {
    let only = |style: HeaderStyle| {
        let mut r = build(style);
        r.headers.retain(|h| !h.key.starts_with("__quarantine."));
        parse_origin(&r).expect("origin")
    };
    let spring = only(HeaderStyle::Spring);
    assert_eq!(spring.found, FoundStyle::Spring);
    assert_eq!(spring.origin, origin());
    let kip = only(HeaderStyle::Kip1191);
    assert_eq!(kip.found, FoundStyle::Kip1191);
    assert_eq!(kip.origin, origin());
    assert_eq!(kip.delivery_count, Some(3));
    let connect = only(HeaderStyle::Connect);
    assert_eq!(connect.found, FoundStyle::Connect);
    assert_eq!(connect.origin.group, "", "Connect does not name a group");
    assert_eq!(connect.origin.partition, 2);
    assert_eq!(connect.stage.as_deref(), Some("KAFKA_CONSUME"));

    let streams = Record {
        headers: vec![
            Header::new("__streams.errors.topic", "t"),
            Header::new("__streams.errors.partition", "0"),
            Header::new("__streams.errors.offset", "9"),
            Header::new("__streams.errors.exception", "java.lang.X"),
        ],
        ..source()
    };
    let info = parse_origin(&streams).expect("streams origin");
    assert_eq!(info.found, FoundStyle::Streams);
    assert_eq!((info.origin.partition, info.origin.offset), (0, 9));
    assert_eq!(info.exception_class.as_deref(), Some("java.lang.X"));

    assert!(parse_origin(&source()).is_none());
    let broken = Record {
        headers: vec![
            Header::new(keys::TOPIC, "t"),
            Header::new(keys::PARTITION, "zero"),
            Header::new(keys::OFFSET, "1"),
        ],
        ..source()
    };
    assert!(parse_origin(&broken).is_none());
}

#[test]
fn replay_count_is_carried_forward_and_incremented_by_replay() {
    let dl = build(HeaderStyle::Connect);
    let replayed = replay_record(&dl);
    assert_eq!(replay_count(&replayed), 1);
    assert!(replayed
        .headers
        .iter()
        .all(|h| !h.key.starts_with("__connect.")));
    assert_eq!(replayed.headers.len(), source().headers.len() + 1);
    assert_eq!((&replayed.key, &replayed.value), (&dl.key, &dl.value));
    // Fails again on the origin topic: dead-lettered with the count carried.
    let again = build_from(&replayed, HeaderStyle::Kip1191);
    assert_eq!(text(&again, keys::REPLAY_COUNT), "1");
    assert_eq!(parse_origin(&again).unwrap().replay_count, 1);
    assert_eq!(replay_count(&replay_record(&again)), 2);
}

#[test]
fn styles_and_reasons_have_stable_spellings() {
    let styles: Vec<HeaderStyle> =
        serde_json::from_str(r#"["connect","spring","kip-1191"]"#).unwrap();
    assert_eq!(
        styles,
        vec![
            HeaderStyle::Connect,
            HeaderStyle::Spring,
            HeaderStyle::Kip1191
        ]
    );
    assert_eq!(HeaderStyle::default(), HeaderStyle::Connect);
    assert!(serde_json::from_str::<HeaderStyle>("\"kip1191\"").is_err());
    for r in Reason::ALL {
        assert_eq!(Reason::parse(r.as_str()), Some(r));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.as_str())
        );
    }
    assert_eq!(Stage::ValueConverter.as_str(), "VALUE_CONVERTER");
    assert_eq!(
        serde_json::to_string(&Stage::KafkaConsume).unwrap(),
        "\"KAFKA_CONSUME\""
    );
}

#[test]
fn without_context_headers_only_the_quarantine_group_is_written() {
    let mut src = source();
    src.headers
        .push(Header::new("__connect.errors.topic", "from-an-earlier-run"));
    let r = dead_letter_record(
        &src,
        &origin(),
        &diag(),
        None,
        "pod-a",
        &HeaderLimits::default(),
    );
    for h in &r.headers {
        assert!(
            !h.key.starts_with("__connect.errors.")
                && !h.key.starts_with("kafka_dlt-")
                && !h.key.starts_with("__dlq.errors."),
            "unexpected context header {}",
            h.key
        );
    }
    assert_eq!(raw(&r, keys::TOPIC), origin().topic.as_bytes());
    assert_eq!(
        raw(&r, keys::OFFSET),
        origin().offset.to_string().as_bytes()
    );
    assert_eq!(raw(&r, keys::REASON), diag().reason.as_str().as_bytes());
    let found = parse_origin(&r).expect("origin still readable for restore and replay");
    assert_eq!(found.origin.offset, origin().offset);
}
