//! Which records of a DLQ topic a tool looks at: DLQ partitions and offsets, the origin
//! (group, topic, partition, offset range), diversion time, key and reason. Shared by
//! `inspect`, `stats`, `replay` and `discard`; stored with a replay task so a resumed task
//! keeps its scope.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::DlqEntry;
use crate::dead_letter::Reason;

/// Which records of a DLQ topic to look at.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize, PartialEq, Eq)]
pub struct Scope {
    /// Only these partitions of the DLQ topic (repeat or comma-separate).
    #[arg(long, value_name = "N", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition: Vec<i32>,
    /// Start at this DLQ offset in every selected partition (default: the earliest).
    #[arg(long, value_name = "OFFSET")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_offset: Option<i64>,
    /// Stop after this DLQ offset (inclusive) in every selected partition.
    #[arg(long, value_name = "OFFSET")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_offset: Option<i64>,
    /// At most this many selected records in all, taken fairly across DLQ partitions.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Only records diverted for this consumer group (`__quarantine.group`).
    #[arg(long = "group", alias = "filter-group", value_name = "GROUP")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only records that came from this topic.
    #[arg(long, value_name = "TOPIC")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_topic: Option<String>,
    /// Only records that came from these origin partitions (repeat or comma-separate).
    #[arg(long, value_name = "N", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin_partition: Vec<i32>,
    /// Only records whose origin offset is at least this.
    #[arg(long, value_name = "OFFSET")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_from_offset: Option<i64>,
    /// Only records whose origin offset is at most this.
    #[arg(long, value_name = "OFFSET")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_to_offset: Option<i64>,
    /// Only records diverted at or after this time: unix milliseconds or RFC 3339
    /// (2026-12-06T07:00:00Z).
    #[arg(long = "diverted-after", alias = "diverted-from", value_name = "TIME", value_parser = parse_time)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverted_from: Option<i64>,
    /// Only records diverted at or before this time (unix ms or RFC 3339).
    #[arg(long = "diverted-before", alias = "diverted-to", value_name = "TIME", value_parser = parse_time)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverted_to: Option<i64>,
    /// Only records with exactly this key (UTF-8).
    #[arg(long, value_name = "KEY")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Only records diverted for this reason: crash-loop, seek-back, stalled, redelivery,
    /// manual or check.
    #[arg(long = "reason", alias = "filter-reason", value_name = "REASON", value_parser = parse_reason)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Parses `--diverted-after`/`--diverted-before`: unix ms or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!(
                "`{s}` is neither unix milliseconds nor an RFC 3339 time (2026-12-06T07:00:00Z)"
            )
        })
}

/// Validates `--reason` against the reasons the proxy writes.
pub fn parse_reason(s: &str) -> Result<String, String> {
    match Reason::parse(s) {
        Some(r) => Ok(r.as_str().to_string()),
        None => Err(format!(
            "`{s}` is not a reason; known: {}",
            Reason::ALL.map(Reason::as_str).join(", ")
        )),
    }
}

impl Scope {
    /// Whether any filter on the records' headers or key is set (DLQ partitions and offsets
    /// aside).
    pub fn filters(&self) -> bool {
        self.key.is_some() || self.header_filters()
    }

    /// Whether anything at all narrows the scope.
    pub fn narrowed(&self) -> bool {
        self.filters()
            || !self.partition.is_empty()
            || self.from_offset.is_some()
            || self.to_offset.is_some()
            || self.limit.is_some()
    }

    /// Checks the flags make sense together; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if let (Some(f), Some(t)) = (self.from_offset, self.to_offset) {
            if t < f {
                return Err(format!("--to-offset {t} is before --from-offset {f}"));
            }
        }
        if let (Some(f), Some(t)) = (self.origin_from_offset, self.origin_to_offset) {
            if t < f {
                return Err(format!(
                    "--origin-to-offset {t} is before --origin-from-offset {f}"
                ));
            }
        }
        if let (Some(f), Some(t)) = (self.diverted_from, self.diverted_to) {
            if t < f {
                return Err("--diverted-before is earlier than --diverted-after".into());
            }
        }
        if self.from_offset.is_some_and(|o| o < 0) {
            return Err("--from-offset must not be negative".into());
        }
        if self.limit == Some(0) {
            return Err("--limit must be at least 1".into());
        }
        if let Some(p) = self.partition.iter().find(|p| **p < 0) {
            return Err(format!("--partition {p}: partitions are 0 or more"));
        }
        Ok(())
    }

    /// Whether a DLQ record passes the header and key filters (partitions, offsets and
    /// the limit are the scanner's business). A record without dead-letter headers passes
    /// only when no filter is set.
    pub fn matches(&self, e: &DlqEntry) -> bool {
        if let Some(k) = &self.key {
            if e.record.key.as_deref() != Some(k.as_bytes()) {
                return false;
            }
        }
        let Some(i) = &e.info else {
            return !self.header_filters();
        };
        let o = &i.origin;
        self.group.as_ref().is_none_or(|g| &o.group == g)
            && self.origin_topic.as_ref().is_none_or(|t| &o.topic == t)
            && (self.origin_partition.is_empty() || self.origin_partition.contains(&o.partition))
            && self.origin_from_offset.is_none_or(|f| o.offset >= f)
            && self.origin_to_offset.is_none_or(|t| o.offset <= t)
            && self
                .diverted_from
                .is_none_or(|f| i.diverted_ms.is_some_and(|d| d >= f))
            && self
                .diverted_to
                .is_none_or(|t| i.diverted_ms.is_some_and(|d| d <= t))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| i.reason_text.as_ref() == Some(r))
    }

    fn header_filters(&self) -> bool {
        self.group.is_some()
            || self.origin_topic.is_some()
            || !self.origin_partition.is_empty()
            || self.origin_from_offset.is_some()
            || self.origin_to_offset.is_some()
            || self.diverted_from.is_some()
            || self.diverted_to.is_some()
            || self.reason.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        assert_eq!(parse_time("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn reasons_are_validated() {
        assert_eq!(parse_reason("crash-loop"), Ok("crash-loop".into()));
        let e = parse_reason("bogus").unwrap_err();
        assert!(e.contains("bogus") && e.contains("seek-back"), "{e}");
    }

    #[test]
    fn contradictory_ranges_are_refused_naming_the_flag() {
        let s = Scope {
            from_offset: Some(9),
            to_offset: Some(3),
            ..Scope::default()
        };
        assert!(s.validate().unwrap_err().contains("--to-offset"));
        let s = Scope {
            limit: Some(0),
            ..Scope::default()
        };
        assert!(s.validate().unwrap_err().contains("--limit"));
    }
}
