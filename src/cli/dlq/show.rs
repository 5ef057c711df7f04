//! Readable and JSON renderings of DLQ records, and counts for `quarantine dlq stats`.
//! Keys and values are hidden unless asked for: they may hold personal data.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine as _;
use serde_json::{json, Value};

use super::ledger::{Handled, Mark};
use super::DlqEntry;

/// Largest payload shown by `--show-payload`, in bytes.
const SHOWN_PAYLOAD: usize = 4096;
/// Largest header value shown in text output (stack traces can be huge), in bytes.
const SHOWN_HEADER: usize = 256;

pub use super::clock::format_ms;

/// A header or payload value as text: quoted UTF-8 when printable, else hex.
fn readable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            format!("{s:?}")
        }
        _ => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// Spring writes partition, offset and timestamp as binary numbers; show them as numbers.
/// Other values are shown up to `max` bytes.
fn header_value(key: &str, value: Option<&[u8]>, max: usize) -> String {
    let Some(v) = value else {
        return "null".into();
    };
    let binary = match key {
        "kafka_dlt-original-partition" => <[u8; 4]>::try_from(v)
            .ok()
            .map(|b| format!("{} (int32)", i32::from_be_bytes(b))),
        "kafka_dlt-original-offset" | "kafka_dlt-original-timestamp" => <[u8; 8]>::try_from(v)
            .ok()
            .map(|b| format!("{} (int64)", i64::from_be_bytes(b))),
        _ => None,
    };
    binary.unwrap_or_else(|| shown(v, max))
}

/// At most `max` bytes of `b`, readable, with the full size when cut (text is cut on a
/// character boundary).
fn shown(b: &[u8], max: usize) -> String {
    if b.len() <= max {
        return readable(b);
    }
    let end = match std::str::from_utf8(b) {
        Ok(s) => (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0),
        Err(_) => max,
    };
    format!("{} … ({} bytes)", readable(&b[..end]), b.len())
}

fn payload(v: Option<&[u8]>) -> String {
    v.map_or("null".into(), |b| shown(b, SHOWN_PAYLOAD))
}

fn size(v: Option<&[u8]>) -> String {
    v.map_or("null".into(), |b| format!("{} bytes", b.len()))
}

/// How a record was handled, in words: `open`, or `replayed by … at … (task …)`.
pub fn status_text(mark: Option<&Mark>) -> String {
    match mark {
        None => "open".into(),
        Some(m) => {
            let what = match &m.how {
                Handled::Replayed { task } => format!("(task {task})"),
                Handled::Discarded { note, id } => match note {
                    Some(n) => format!("({id}: {n})"),
                    None => format!("({id})"),
                },
            };
            format!("{} by {} at {} {what}", m.status(), m.by, format_ms(m.at))
        }
    }
}

/// One DLQ record as readable text (several lines, no trailing newline).
pub fn entry_text(topic: &str, e: &DlqEntry, show_payload: bool, mark: Option<&Mark>) -> String {
    let r = &e.record;
    let mut s = format!(
        "{topic}[{}]@{}  {}",
        e.partition,
        r.offset,
        format_ms(r.timestamp)
    );
    let _ = write!(s, "\n  status:  {}", status_text(mark));
    match &e.info {
        Some(i) => {
            let o = &i.origin;
            let _ = write!(
                s,
                "\n  origin:  {}[{}]@{}  group={}",
                o.topic,
                o.partition,
                o.offset,
                if o.group.is_empty() { "?" } else { &o.group }
            );
            let _ = write!(
                s,
                "\n  reason:  {}  stage={}  deliveries={}  replays={}  (headers: {})",
                i.reason_text.as_deref().unwrap_or("?"),
                i.stage.as_deref().unwrap_or("?"),
                i.delivery_count.map_or("?".into(), |c| c.to_string()),
                i.replay_count,
                i.found.as_str()
            );
            if let (Some(a), Some(b)) = (i.first_delivery_ms, i.last_delivery_ms) {
                let _ = write!(s, "\n  delivered: {} .. {}", format_ms(a), format_ms(b));
            }
            if let Some(d) = i.diverted_ms {
                let by = i.instance.as_deref().unwrap_or("?");
                let _ = write!(s, "\n  diverted:  {} by {by}", format_ms(d));
            }
            if let Some(m) = &i.message {
                let class = i.exception_class.as_deref().unwrap_or("?");
                let _ = write!(s, "\n  error:   {class}: {m}");
            }
        }
        None => s.push_str("\n  origin:  unknown (no dead-letter headers)"),
    }
    if show_payload {
        let _ = write!(s, "\n  key:     {}", payload(r.key.as_deref()));
        let _ = write!(s, "\n  value:   {}", payload(r.value.as_deref()));
    } else {
        let _ = write!(
            s,
            "\n  key: {}, value: {} (hidden; --show-payload prints them)",
            size(r.key.as_deref()),
            size(r.value.as_deref())
        );
    }
    s.push_str("\n  headers:");
    for h in &r.headers {
        let value = header_value(&h.key, h.value.as_deref(), SHOWN_HEADER);
        let _ = write!(s, "\n    {} = {value}", h.key);
    }
    if r.headers.is_empty() {
        s.push_str(" none");
    }
    s
}

/// A key or value as JSON: the value itself when it is JSON, else base64; with its
/// encoding (`json` or `base64`). Nothing is cut.
pub fn payload_json(b: Option<&[u8]>) -> (Value, Value) {
    match b {
        None => (Value::Null, Value::Null),
        Some(b) => match serde_json::from_slice::<Value>(b) {
            Ok(v) => (v, json!("json")),
            Err(_) => (
                json!(base64::engine::general_purpose::STANDARD.encode(b)),
                json!("base64"),
            ),
        },
    }
}

/// A header as JSON: UTF-8 values as strings, others base64; Spring's binary numbers
/// also as `number`.
fn header_json(key: &str, value: Option<&[u8]>) -> Value {
    let Some(v) = value else {
        return json!({"key": key, "value": null});
    };
    let mut h = match std::str::from_utf8(v) {
        Ok(s) => json!({"key": key, "value": s, "encoding": "utf8"}),
        Err(_) => json!({
            "key": key,
            "value": base64::engine::general_purpose::STANDARD.encode(v),
            "encoding": "base64",
        }),
    };
    let number = match key {
        "kafka_dlt-original-partition" => <[u8; 4]>::try_from(v)
            .ok()
            .map(|b| i64::from(i32::from_be_bytes(b))),
        "kafka_dlt-original-offset" | "kafka_dlt-original-timestamp" => {
            <[u8; 8]>::try_from(v).ok().map(i64::from_be_bytes)
        }
        _ => None,
    };
    if let Some(n) = number {
        h["number"] = json!(n);
    }
    h
}

/// How a record was handled, as JSON.
pub fn status_json(mark: Option<&Mark>) -> Value {
    match mark {
        None => json!({"status": "open"}),
        Some(m) => {
            let mut v = json!({"status": m.status(), "by": m.by, "at": m.at});
            match &m.how {
                Handled::Replayed { task } => v["task"] = json!(task),
                Handled::Discarded { id, note } => {
                    v["id"] = json!(id);
                    v["note"] = json!(note);
                }
            }
            v
        }
    }
}

/// One DLQ record as a JSON object.
pub fn entry_json(topic: &str, e: &DlqEntry, show_payload: bool, mark: Option<&Mark>) -> Value {
    let r = &e.record;
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|h| header_json(&h.key, h.value.as_deref()))
        .collect();
    let mut v = json!({
        "topic": topic,
        "partition": e.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key_bytes": r.key.as_ref().map(|k| k.len()),
        "value_bytes": r.value.as_ref().map(|k| k.len()),
        "headers": headers,
        "status": status_json(mark),
    });
    if let Some(i) = &e.info {
        v["origin"] = json!({
            "topic": i.origin.topic,
            "partition": i.origin.partition,
            "offset": i.origin.offset,
            "group": i.origin.group,
            "timestamp": i.origin.timestamp,
        });
        v["found"] = json!(i.found.as_str());
        v["reason"] = json!(i.reason_text);
        v["stage"] = json!(i.stage);
        v["exception_class"] = json!(i.exception_class);
        v["message"] = json!(i.message);
        v["delivery_count"] = json!(i.delivery_count);
        v["first_delivery_ms"] = json!(i.first_delivery_ms);
        v["last_delivery_ms"] = json!(i.last_delivery_ms);
        v["diverted_ms"] = json!(i.diverted_ms);
        v["instance"] = json!(i.instance);
        v["replay_count"] = json!(i.replay_count);
    }
    if show_payload {
        let (key, key_encoding) = payload_json(r.key.as_deref());
        let (value, value_encoding) = payload_json(r.value.as_deref());
        v["key"] = key;
        v["key_encoding"] = key_encoding;
        v["value"] = value;
        v["value_encoding"] = value_encoding;
    }
    v
}

/// Counts of a DLQ topic's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records read.
    pub total: usize,
    /// By reason (`unknown` when the headers name none).
    pub by_reason: BTreeMap<String, usize>,
    /// By origin topic and partition.
    pub by_origin: BTreeMap<(String, i32), usize>,
    /// By consumer group (`?` when the headers name none).
    pub by_group: BTreeMap<String, usize>,
    /// Records replayed at least once before landing here again.
    pub replayed_before: usize,
    /// Records without any dead-letter headers.
    pub no_origin: usize,
    /// By lifecycle status: open, replayed, discarded.
    pub by_status: BTreeMap<String, usize>,
}

/// Counts `entries` (all open).
pub fn stats(entries: &[DlqEntry]) -> Stats {
    let mut s = Stats::default();
    for e in entries {
        s.add(e, None);
    }
    s
}

impl Stats {
    /// Counts one record with how it was handled.
    pub fn add(&mut self, e: &DlqEntry, mark: Option<&Mark>) {
        let s = self;
        s.total += 1;
        let status = mark.map_or("open", Mark::status);
        *s.by_status.entry(status.to_string()).or_default() += 1;
        let Some(i) = &e.info else {
            s.no_origin += 1;
            return;
        };
        let reason = i.reason_text.clone().unwrap_or_else(|| "unknown".into());
        *s.by_reason.entry(reason).or_default() += 1;
        *s.by_origin
            .entry((i.origin.topic.clone(), i.origin.partition))
            .or_default() += 1;
        let group = if i.origin.group.is_empty() {
            "?".to_string()
        } else {
            i.origin.group.clone()
        };
        *s.by_group.entry(group).or_default() += 1;
        if i.replay_count > 0 {
            s.replayed_before += 1;
        }
    }

    /// A readable table.
    pub fn render(&self, topic: &str) -> String {
        let mut s = format!("{topic}: {} record(s)\n", self.total);
        s.push_str("by status:\n");
        for k in ["open", "replayed", "discarded"] {
            let n = self.by_status.get(k).copied().unwrap_or(0);
            let _ = writeln!(s, "  {k:<24} {n}");
        }
        s.push_str("by reason:\n");
        for (k, n) in &self.by_reason {
            let _ = writeln!(s, "  {k:<24} {n}");
        }
        s.push_str("by origin partition:\n");
        for ((t, p), n) in &self.by_origin {
            let _ = writeln!(s, "  {:<24} {n}", format!("{t}[{p}]"));
        }
        s.push_str("by group:\n");
        for (k, n) in &self.by_group {
            let _ = writeln!(s, "  {k:<24} {n}");
        }
        let _ = writeln!(s, "replayed before: {}", self.replayed_before);
        let _ = writeln!(s, "without dead-letter headers: {}", self.no_origin);
        s
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        let origins: Vec<Value> = self
            .by_origin
            .iter()
            .map(|((t, p), n)| json!({"topic": t, "partition": p, "count": n}))
            .collect();
        json!({
            "total": self.total,
            "by_status": {
                "open": self.by_status.get("open").copied().unwrap_or(0),
                "replayed": self.by_status.get("replayed").copied().unwrap_or(0),
                "discarded": self.by_status.get("discarded").copied().unwrap_or(0),
            },
            "by_reason": self.by_reason,
            "by_origin": origins,
            "by_group": self.by_group,
            "replayed_before": self.replayed_before,
            "no_origin": self.no_origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::*;
    use crate::protocol::record::{Header, Record};
    use bytes::Bytes;

    fn entry(reason: Reason, partition: i32, replays: u32) -> DlqEntry {
        let source = Record {
            offset: 7,
            timestamp: 0,
            key: Some(Bytes::from_static(b"secret-key")),
            value: Some(Bytes::from_static(b"secret-value")),
            headers: vec![Header::new(keys::REPLAY_COUNT, replays.to_string())],
        };
        let origin = Origin {
            topic: "orders".into(),
            partition,
            offset: 7,
            group: "g".into(),
            timestamp: 0,
        };
        let diag = Diagnosis {
            stage: Stage::KafkaConsume,
            reason,
            class_name: None,
            exception_class: "quarantine.PoisonRecord".into(),
            message: "boom".into(),
            delivery_count: 3,
            first_delivery_ms: 1,
            last_delivery_ms: 2,
            diverted_ms: 3,
        };
        let record = dead_letter_record(
            &source,
            &origin,
            &diag,
            Some(HeaderStyle::Spring),
            "pod",
            &HeaderLimits::default(),
        );
        DlqEntry {
            partition: 0,
            info: parse_origin(&record),
            record,
        }
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn text_hides_payloads_unless_asked_and_decodes_spring_numbers() {
        let e = entry(Reason::CrashLoop, 2, 0);
        let hidden = entry_text("orders.dlq", &e, false, None);
        assert!(!hidden.contains("secret"), "{hidden}");
        assert!(hidden.contains("origin:  orders[2]@7  group=g"), "{hidden}");
        assert!(hidden.contains("reason:  crash-loop"), "{hidden}");
        assert!(hidden.contains("kafka_dlt-original-partition = 2 (int32)"));
        assert!(hidden.contains("kafka_dlt-original-offset = 7 (int64)"));
        let with_payload = entry_text("orders.dlq", &e, true, None);
        assert!(with_payload.contains("\"secret-value\""), "{with_payload}");
        let j = entry_json("orders.dlq", &e, false, None);
        assert!(j.get("value").is_none());
        assert_eq!(j["origin"]["partition"], 2);
        assert_eq!(j["reason"], "crash-loop");
        let j = entry_json("orders.dlq", &e, true, None);
        assert_eq!(j["value"], "c2VjcmV0LXZhbHVl");
        assert_eq!(j["value_encoding"], "base64");
        assert_eq!(j["status"]["status"], "open");
        assert_eq!(readable(&[0, 1, 255]), "0x0001ff");
        assert!(
            hidden.contains("kafka_dlt-original-topic = \"orders\""),
            "{hidden}"
        );
        let long = shown("é".repeat(300).as_bytes(), 11);
        assert_eq!(long, "\"ééééé\" … (600 bytes)");
        assert!(header_value("x", Some(&[7u8; 300]), 4).ends_with("… (300 bytes)"));
    }

    #[test]
    fn stats_count_by_reason_origin_and_group() {
        let mut entries = vec![
            entry(Reason::CrashLoop, 0, 0),
            entry(Reason::CrashLoop, 1, 1),
            entry(Reason::Check, 1, 0),
        ];
        entries.push(DlqEntry {
            partition: 0,
            record: Record {
                offset: 9,
                timestamp: 0,
                key: None,
                value: None,
                headers: vec![],
            },
            info: None,
        });
        let s = stats(&entries);
        assert_eq!(s.total, 4);
        assert_eq!(s.no_origin, 1);
        assert_eq!(s.by_reason.get("crash-loop"), Some(&2));
        assert_eq!(s.by_reason.get("check"), Some(&1));
        assert_eq!(s.by_origin.get(&("orders".into(), 1)), Some(&2));
        assert_eq!(s.by_group.get("g"), Some(&3));
        assert_eq!(s.replayed_before, 1);
        assert!(s.render("orders.dlq").contains("orders[1]"));
        assert_eq!(s.to_json()["by_reason"]["crash-loop"], 2);
    }
}
