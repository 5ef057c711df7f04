//! The dead-letter record format: what a record looks like once it is written to a
//! dead-letter topic (DLQ), and how to read its origin back.
//!
//! Pure functions only: no sockets, no clock. The caller passes the time of diversion in
//! [`Diagnosis::diverted_ms`].
//!
//! # Header format
//!
//! A dead-letter record keeps the source record's **key, value, timestamp and headers**, so
//! it can be replayed to where it came from. Error headers of earlier dead-letterings are
//! removed first, whatever tool wrote them: every header whose key starts with
//! `__connect.errors.`, `kafka_dlt-`, `__dlq.errors.`, `__streams.errors.` or
//! `__quarantine.`. Only the replay counter survives (see below). Then two groups of
//! headers are appended.
//!
//! **1. The style's headers**, chosen by the configured header style (none at all when a
//! pipeline sets `errors.deadletterqueue.context.headers.enable: false`):
//!
//! | style | header | value |
//! |---|---|---|
//! | `connect` (default) | `__connect.errors.topic` | source topic, UTF-8 |
//! | | `__connect.errors.partition` | source partition, decimal UTF-8 |
//! | | `__connect.errors.offset` | source offset, decimal UTF-8 |
//! | | `__connect.errors.connector.name` | `quarantine` |
//! | | `__connect.errors.task.id` | proxy instance name |
//! | | `__connect.errors.stage` | `KAFKA_CONSUME` (detected on the wire), `VALUE_CONVERTER`, `TRANSFORMATION`, ... |
//! | | `__connect.errors.class.name` | the check or transform that failed, else `quarantine` |
//! | | `__connect.errors.exception.class.name` | exception class |
//! | | `__connect.errors.exception.message` | what went wrong, in words |
//! | `spring` | `kafka_dlt-original-topic` | source topic, UTF-8 |
//! | | `kafka_dlt-original-partition` | 4-byte big-endian int |
//! | | `kafka_dlt-original-offset` | 8-byte big-endian long |
//! | | `kafka_dlt-original-timestamp` | 8-byte big-endian long (ms) |
//! | | `kafka_dlt-original-consumer-group` | group, UTF-8 |
//! | | `kafka_dlt-exception-fqcn` | exception class, UTF-8 |
//! | | `kafka_dlt-exception-message` | message, UTF-8 |
//! | `kip-1191` | `__dlq.errors.topic` | source topic, UTF-8 |
//! | | `__dlq.errors.partition` | decimal UTF-8 |
//! | | `__dlq.errors.offset` | decimal UTF-8 |
//! | | `__dlq.errors.group` | group, UTF-8 |
//! | | `__dlq.errors.delivery.count` | decimal UTF-8 |
//! | | `__dlq.errors.message` | message, UTF-8 |
//!
//! **2. Always, the quarantine headers**, all UTF-8 strings (numbers in decimal, times in
//! milliseconds since the Unix epoch). They make restore and replay work whatever the style:
//!
//! | header | value |
//! |---|---|
//! | `__quarantine.group` | consumer group that could not process the record |
//! | `__quarantine.topic` | source topic |
//! | `__quarantine.partition` | source partition |
//! | `__quarantine.offset` | source offset |
//! | `__quarantine.reason` | `crash-loop`, `seek-back`, `stalled`, `redelivery`, `manual` or `check` |
//! | `__quarantine.delivery.count` | deliveries seen before diverting |
//! | `__quarantine.first.delivery.ms` | first delivery of the offset |
//! | `__quarantine.last.delivery.ms` | last delivery of the offset |
//! | `__quarantine.instance` | proxy instance that diverted it |
//! | `__quarantine.diverted.ms` | when it was diverted |
//! | `__quarantine.replay.count` | how many times it was replayed from a DLQ (carried forward) |
//!
//! A record written back by `quarantine dlq replay` also carries
//! `__quarantine.replay.source` (`<dlq>/<partition>/<offset>`, the DLQ record it came from)
//! and `__quarantine.replay.task` (the replay task's id); like every `__quarantine.` header
//! they are removed when the record is dead-lettered again.
//!
//! Free-text values (exception class, message, class name, instance) are capped at
//! [`HeaderLimits::max_value_bytes`] (1 KiB by default), cut on a character boundary and
//! ending in `…`. Identity values (topic, group) are written in full, because restore needs
//! them exactly; they do not grow from one dead-lettering to the next. No stack traces are
//! written. So dead-lettering the same record again yields a record of the same size.

mod parse;
mod route;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::protocol::record::{Header, Record};

pub use parse::{parse_origin, replay_count, DeadLetterInfo, FoundStyle};
pub use route::{
    dlq_partition, dlq_topic_name, murmur2, validate_template, validate_topic_name, TemplateError,
    DEFAULT_TEMPLATE, MAX_TOPIC_NAME_LEN,
};

/// Key prefixes of error headers written by dead-letter tools (Kafka Connect, Spring,
/// KIP-1191 share groups, Kafka Streams, this proxy). Stripped before new ones are added.
pub const ERROR_HEADER_PREFIXES: [&str; 5] = [
    "__connect.errors.",
    "kafka_dlt-",
    "__dlq.errors.",
    "__streams.errors.",
    "__quarantine.",
];

/// Value of `__connect.errors.connector.name`, and of `.class.name` when no check named one.
pub const CONNECTOR_NAME: &str = "quarantine";

/// Header keys of the quarantine group.
pub mod keys {
    /// Consumer group.
    pub const GROUP: &str = "__quarantine.group";
    /// Source topic.
    pub const TOPIC: &str = "__quarantine.topic";
    /// Source partition.
    pub const PARTITION: &str = "__quarantine.partition";
    /// Source offset.
    pub const OFFSET: &str = "__quarantine.offset";
    /// Detection reason.
    pub const REASON: &str = "__quarantine.reason";
    /// Deliveries seen.
    pub const DELIVERY_COUNT: &str = "__quarantine.delivery.count";
    /// First delivery time (ms).
    pub const FIRST_DELIVERY_MS: &str = "__quarantine.first.delivery.ms";
    /// Last delivery time (ms).
    pub const LAST_DELIVERY_MS: &str = "__quarantine.last.delivery.ms";
    /// Proxy instance.
    pub const INSTANCE: &str = "__quarantine.instance";
    /// Diversion time (ms).
    pub const DIVERTED_MS: &str = "__quarantine.diverted.ms";
    /// Replay counter.
    pub const REPLAY_COUNT: &str = "__quarantine.replay.count";
}

/// Which family of DLQ headers to write besides the quarantine ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderStyle {
    /// Kafka Connect's `__connect.errors.*` context headers (UTF-8 strings).
    #[default]
    Connect,
    /// Spring for Apache Kafka's `kafka_dlt-*` headers (binary numbers).
    Spring,
    /// KIP-1191 share-group DLQ headers `__dlq.errors.*`.
    #[serde(rename = "kip-1191")]
    Kip1191,
}

impl HeaderStyle {
    /// The config spelling: `connect`, `spring` or `kip-1191`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderStyle::Connect => "connect",
            HeaderStyle::Spring => "spring",
            HeaderStyle::Kip1191 => "kip-1191",
        }
    }
}

/// Where in the processing of a record it failed, in Kafka Connect's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    /// The application could not process it; detected on the wire.
    KafkaConsume,
    /// The key could not be converted (deserialised).
    KeyConverter,
    /// The value could not be converted (deserialised) or failed a schema check.
    ValueConverter,
    /// A header could not be converted.
    HeaderConverter,
    /// A transform or check rejected it.
    Transformation,
}

impl Stage {
    /// Kafka Connect's spelling, e.g. `KAFKA_CONSUME`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::KafkaConsume => "KAFKA_CONSUME",
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::HeaderConverter => "HEADER_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
        }
    }
}

/// Why the record was diverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The consumer died and was restarted on the same offset.
    CrashLoop,
    /// The consumer sought back to the offset in process.
    SeekBack,
    /// The group's commit stopped moving while the offset was re-delivered.
    Stalled,
    /// Re-delivered too often, cause not told apart.
    Redelivery,
    /// Quarantined by hand through the admin API.
    Manual,
    /// A configured check rejected it.
    Check,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 6] = [
        Reason::CrashLoop,
        Reason::SeekBack,
        Reason::Stalled,
        Reason::Redelivery,
        Reason::Manual,
        Reason::Check,
    ];

    /// The header spelling, e.g. `crash-loop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CrashLoop => "crash-loop",
            Reason::SeekBack => "seek-back",
            Reason::Stalled => "stalled",
            Reason::Redelivery => "redelivery",
            Reason::Manual => "manual",
            Reason::Check => "check",
        }
    }

    /// Parses the header spelling.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where the source record was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset of the record in the source partition.
    pub offset: i64,
    /// Consumer group that could not process it (empty when unknown).
    pub group: String,
    /// The source record's timestamp (ms).
    pub timestamp: i64,
}

/// Why and when a record was found to be poison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Processing stage, Kafka Connect style.
    pub stage: Stage,
    /// Detection reason.
    pub reason: Reason,
    /// The check or transform that rejected the record; `None` for the proxy itself.
    pub class_name: Option<String>,
    /// Exception class, e.g. `quarantine.PoisonRecord` or a check's error type.
    pub exception_class: String,
    /// What went wrong, in words.
    pub message: String,
    /// Deliveries of the offset seen before diverting.
    pub delivery_count: u32,
    /// First delivery time (ms since the epoch).
    pub first_delivery_ms: i64,
    /// Last delivery time (ms since the epoch).
    pub last_delivery_ms: i64,
    /// When the record was diverted (ms since the epoch); passed in to keep this pure.
    pub diverted_ms: i64,
}

/// Caps on the values written into headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderLimits {
    /// Largest free-text header value in bytes (exception class, message, class name,
    /// instance). At least 16.
    pub max_value_bytes: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_value_bytes: 1024,
        }
    }
}

/// Whether a header key belongs to an earlier dead-lettering (any tool's style).
pub fn is_error_header(key: &str) -> bool {
    ERROR_HEADER_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The source's headers without any error header, in their original order.
pub fn strip_error_headers(headers: &[Header]) -> Vec<Header> {
    headers
        .iter()
        .filter(|h| !is_error_header(&h.key))
        .cloned()
        .collect()
}

/// Cuts `s` to at most `max` bytes on a character boundary, ending in `…` when cut.
pub fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const MARK: &str = "…";
    let room = max.saturating_sub(MARK.len());
    let mut end = room.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_string();
    if max >= MARK.len() {
        out.push_str(MARK);
    }
    out
}

/// Builds the dead-letter record for `source`; see the module doc for the exact format.
/// `style` `None` writes no context headers of any style, only the quarantine group.
/// The result's offset is the source's and means nothing once produced.
pub fn dead_letter_record(
    source: &Record,
    origin: &Origin,
    diag: &Diagnosis,
    style: Option<HeaderStyle>,
    instance: &str,
    limits: &HeaderLimits,
) -> Record {
    let max = limits.max_value_bytes.max(16);
    let text = |s: &str| Bytes::from(cap(s, max));
    let replays = replay_count(source);
    let mut headers = strip_error_headers(&source.headers);
    let mut put = |key: &str, value: Bytes| headers.push(Header::new(key, value));
    let exception_class = text(&diag.exception_class);
    let message = text(&diag.message);
    match style {
        None => {}
        Some(HeaderStyle::Connect) => {
            let p = "__connect.errors.";
            put(&format!("{p}topic"), Bytes::from(origin.topic.clone()));
            put(
                &format!("{p}partition"),
                origin.partition.to_string().into(),
            );
            put(&format!("{p}offset"), origin.offset.to_string().into());
            put(&format!("{p}connector.name"), CONNECTOR_NAME.into());
            put(&format!("{p}task.id"), text(instance));
            put(&format!("{p}stage"), diag.stage.as_str().into());
            put(
                &format!("{p}class.name"),
                text(diag.class_name.as_deref().unwrap_or(CONNECTOR_NAME)),
            );
            put(&format!("{p}exception.class.name"), exception_class);
            put(&format!("{p}exception.message"), message);
        }
        Some(HeaderStyle::Spring) => {
            let p = "kafka_dlt-";
            put(
                &format!("{p}original-topic"),
                Bytes::from(origin.topic.clone()),
            );
            put(
                &format!("{p}original-partition"),
                Bytes::copy_from_slice(&origin.partition.to_be_bytes()),
            );
            put(
                &format!("{p}original-offset"),
                Bytes::copy_from_slice(&origin.offset.to_be_bytes()),
            );
            put(
                &format!("{p}original-timestamp"),
                Bytes::copy_from_slice(&origin.timestamp.to_be_bytes()),
            );
            put(
                &format!("{p}original-consumer-group"),
                Bytes::from(origin.group.clone()),
            );
            put(&format!("{p}exception-fqcn"), exception_class);
            put(&format!("{p}exception-message"), message);
        }
        Some(HeaderStyle::Kip1191) => {
            let p = "__dlq.errors.";
            put(&format!("{p}topic"), Bytes::from(origin.topic.clone()));
            put(
                &format!("{p}partition"),
                origin.partition.to_string().into(),
            );
            put(&format!("{p}offset"), origin.offset.to_string().into());
            put(&format!("{p}group"), Bytes::from(origin.group.clone()));
            put(
                &format!("{p}delivery.count"),
                diag.delivery_count.to_string().into(),
            );
            put(&format!("{p}message"), message);
        }
    }
    put(keys::GROUP, Bytes::from(origin.group.clone()));
    put(keys::TOPIC, Bytes::from(origin.topic.clone()));
    put(keys::PARTITION, origin.partition.to_string().into());
    put(keys::OFFSET, origin.offset.to_string().into());
    put(keys::REASON, diag.reason.as_str().into());
    put(keys::DELIVERY_COUNT, diag.delivery_count.to_string().into());
    put(
        keys::FIRST_DELIVERY_MS,
        diag.first_delivery_ms.to_string().into(),
    );
    put(
        keys::LAST_DELIVERY_MS,
        diag.last_delivery_ms.to_string().into(),
    );
    put(keys::INSTANCE, text(instance));
    put(keys::DIVERTED_MS, diag.diverted_ms.to_string().into());
    put(keys::REPLAY_COUNT, replays.to_string().into());
    Record {
        offset: source.offset,
        timestamp: source.timestamp,
        key: source.key.clone(),
        value: source.value.clone(),
        headers,
    }
}

/// The record to write back to the origin topic on replay: key, value, timestamp and
/// headers of the dead-letter record without any error header, plus
/// `__quarantine.replay.count` one higher than before.
pub fn replay_record(dead_letter: &Record) -> Record {
    let next = replay_count(dead_letter).saturating_add(1);
    let mut headers = strip_error_headers(&dead_letter.headers);
    headers.push(Header::new(keys::REPLAY_COUNT, next.to_string()));
    Record {
        offset: dead_letter.offset,
        timestamp: dead_letter.timestamp,
        key: dead_letter.key.clone(),
        value: dead_letter.value.clone(),
        headers,
    }
}

#[cfg(test)]
mod tests;
