//! Reading a dead-letter record's origin and diagnosis back from its headers, in any of the
//! styles this proxy writes and the ones other tools write (Kafka Streams too). Used to
//! rebuild quarantine state at start and by the replay tool.

use crate::protocol::record::Record;

use super::{keys, Origin, Reason};

/// Which header family named the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundStyle {
    /// `__quarantine.*` (written by this proxy in every style).
    Quarantine,
    /// `__dlq.errors.*` (KIP-1191).
    Kip1191,
    /// `__connect.errors.*` (Kafka Connect).
    Connect,
    /// `kafka_dlt-*` (Spring for Apache Kafka).
    Spring,
    /// `__streams.errors.*` (Kafka Streams, KIP-1034).
    Streams,
}

impl FoundStyle {
    /// A short name for display.
    pub fn as_str(self) -> &'static str {
        match self {
            FoundStyle::Quarantine => "quarantine",
            FoundStyle::Kip1191 => "kip-1191",
            FoundStyle::Connect => "connect",
            FoundStyle::Spring => "spring",
            FoundStyle::Streams => "streams",
        }
    }
}

/// What a dead-letter record says about itself. Fields a style does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// Where the record came from; `group` is empty when no header names it, `timestamp`
    /// is Spring's original timestamp when present, else the record's own.
    pub origin: Origin,
    /// The header family the origin was read from.
    pub found: FoundStyle,
    /// Detection reason (`__quarantine.reason`).
    pub reason: Option<Reason>,
    /// The reason as written, also when it is not one this version knows.
    pub reason_text: Option<String>,
    /// Connect stage.
    pub stage: Option<String>,
    /// Exception class.
    pub exception_class: Option<String>,
    /// Error message.
    pub message: Option<String>,
    /// Deliveries seen before diverting.
    pub delivery_count: Option<u32>,
    /// First delivery (ms).
    pub first_delivery_ms: Option<i64>,
    /// Last delivery (ms).
    pub last_delivery_ms: Option<i64>,
    /// Proxy instance (or Connect task id).
    pub instance: Option<String>,
    /// When it was diverted (ms).
    pub diverted_ms: Option<i64>,
    /// Times replayed before (0 when absent).
    pub replay_count: u32,
}

/// Reads header values of one record; the last occurrence of a key wins, as a later
/// writer's value is the current one.
struct Headers<'a>(&'a Record);

impl Headers<'_> {
    fn raw(&self, key: &str) -> Option<&[u8]> {
        self.0
            .headers
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }

    fn text(&self, key: &str) -> Option<String> {
        self.raw(key)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.text(key)?.trim().parse().ok()
    }

    /// Spring writes numbers as big-endian binary; other tools sometimes as text.
    fn be_i32(&self, key: &str) -> Option<i32> {
        let v = self.raw(key)?;
        match <[u8; 4]>::try_from(v) {
            Ok(b) => Some(i32::from_be_bytes(b)),
            Err(_) => self.num(key),
        }
    }

    fn be_i64(&self, key: &str) -> Option<i64> {
        let v = self.raw(key)?;
        match <[u8; 8]>::try_from(v) {
            Ok(b) => Some(i64::from_be_bytes(b)),
            Err(_) => self.num(key),
        }
    }

    /// Topic, partition and offset under one header family, if all three are there.
    fn triple(&self, prefix: &str) -> Option<(String, i32, i64)> {
        Some((
            self.text(&format!("{prefix}topic"))?,
            self.num(&format!("{prefix}partition"))?,
            self.num(&format!("{prefix}offset"))?,
        ))
    }
}

/// How many times the record was replayed from a DLQ (`__quarantine.replay.count`, 0 when
/// absent or unreadable).
pub fn replay_count(record: &Record) -> u32 {
    Headers(record).num(keys::REPLAY_COUNT).unwrap_or(0)
}

/// Reads the origin and diagnosis of a dead-letter record, trying `__quarantine.*`, then
/// KIP-1191, Connect, Spring and Kafka Streams headers. `None` when no family names a
/// topic, partition and offset.
pub fn parse_origin(record: &Record) -> Option<DeadLetterInfo> {
    let h = Headers(record);
    let spring = || {
        Some((
            h.text("kafka_dlt-original-topic")?,
            h.be_i32("kafka_dlt-original-partition")?,
            h.be_i64("kafka_dlt-original-offset")?,
        ))
    };
    let (found, (topic, partition, offset)) = [
        (FoundStyle::Quarantine, h.triple("__quarantine.")),
        (FoundStyle::Kip1191, h.triple("__dlq.errors.")),
        (FoundStyle::Connect, h.triple("__connect.errors.")),
        (FoundStyle::Spring, spring()),
        (FoundStyle::Streams, h.triple("__streams.errors.")),
    ]
    .into_iter()
    .find_map(|(style, t)| t.map(|t| (style, t)))?;
    let group = h
        .text(keys::GROUP)
        .or_else(|| h.text("__dlq.errors.group"))
        .or_else(|| h.text("kafka_dlt-original-consumer-group"))
        .unwrap_or_default();
    let timestamp = h
        .be_i64("kafka_dlt-original-timestamp")
        .unwrap_or(record.timestamp);
    let reason_text = h.text(keys::REASON);
    Some(DeadLetterInfo {
        origin: Origin {
            topic,
            partition,
            offset,
            group,
            timestamp,
        },
        found,
        reason: reason_text.as_deref().and_then(Reason::parse),
        reason_text,
        stage: h.text("__connect.errors.stage"),
        exception_class: h
            .text("__connect.errors.exception.class.name")
            .or_else(|| h.text("kafka_dlt-exception-fqcn"))
            .or_else(|| h.text("__streams.errors.exception")),
        message: h
            .text("__connect.errors.exception.message")
            .or_else(|| h.text("kafka_dlt-exception-message"))
            .or_else(|| h.text("__dlq.errors.message"))
            .or_else(|| h.text("__streams.errors.message")),
        delivery_count: h
            .num(keys::DELIVERY_COUNT)
            .or_else(|| h.num("__dlq.errors.delivery.count")),
        first_delivery_ms: h.num(keys::FIRST_DELIVERY_MS),
        last_delivery_ms: h.num(keys::LAST_DELIVERY_MS),
        instance: h
            .text(keys::INSTANCE)
            .or_else(|| h.text("__connect.errors.task.id")),
        diverted_ms: h.num(keys::DIVERTED_MS),
        replay_count: replay_count(record),
    })
}
