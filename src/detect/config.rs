//! Detection settings: the per-key [`DetectConfig`] (how many deliveries make a record
//! suspect, how long a commit may stall, the isolation backoff) and the process-wide
//! [`DetectorLimits`] that bound memory.
//!
//! Durations are written the way operators write them, `"30s"`, `"1m30s"`, `"500ms"`,
//! or as a bare integer of milliseconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Detection settings for one (group, topic) pair. Every field has a default, so an empty
/// config section is a working one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectConfig {
    /// Deliveries of the same offset, without the commit passing it, that make the
    /// partition suspect and start isolation. At least 1.
    pub max_deliveries: u32,
    /// How long the committed offset may stay still while records are delivered beyond it
    /// before the partition is reported as stalled.
    #[serde(with = "duration_text")]
    pub stall_timeout: Duration,
    /// First redelivery delay after a failure in isolation; `0` turns backoff off.
    #[serde(with = "duration_text")]
    pub backoff_initial: Duration,
    /// Cap of the exponential redelivery delay.
    #[serde(with = "duration_text")]
    pub backoff_max: Duration,
    /// Failures of a window holding a single suspect record before that record is
    /// declared poison. At least 1.
    pub isolation_confirmations: u32,
    /// How long a delivered isolation window may see neither a commit nor a failure,
    /// while the consumer asks for more, before the window is widened.
    #[serde(with = "duration_text")]
    pub isolation_idle_timeout: Duration,
    /// Longest time the group's other partitions are held back while one partition's
    /// single suspect record is delivered alone (a probe), so that a crash can only be
    /// that record's. A probe normally ends at once: the record is committed or fails.
    #[serde(with = "duration_text")]
    pub probe_timeout: Duration,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            max_deliveries: 3,
            stall_timeout: Duration::from_secs(60),
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::from_secs(30),
            isolation_confirmations: 1,
            isolation_idle_timeout: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(15),
        }
    }
}

/// A detection setting that cannot work, named by its config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid detection setting `{key}`: {reason}")]
pub struct ConfigError {
    /// The config key, as written in the config file.
    pub key: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl DetectConfig {
    /// Checks the values that would make detection misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError { key, reason });
        if self.max_deliveries == 0 {
            return bad("max_deliveries", "must be at least 1".into());
        }
        if self.isolation_confirmations == 0 {
            return bad("isolation_confirmations", "must be at least 1".into());
        }
        if self.stall_timeout.is_zero() {
            return bad("stall_timeout", "must be longer than 0".into());
        }
        if self.probe_timeout.is_zero() {
            return bad("probe_timeout", "must be longer than 0".into());
        }
        if self.isolation_idle_timeout.is_zero() {
            return bad("isolation_idle_timeout", "must be longer than 0".into());
        }
        if !self.backoff_initial.is_zero() && self.backoff_max < self.backoff_initial {
            return bad(
                "backoff_max",
                format!(
                    "{} is shorter than backoff_initial ({})",
                    format_duration(self.backoff_max),
                    format_duration(self.backoff_initial)
                ),
            );
        }
        Ok(())
    }

    /// Redelivery delay after the `failures`-th failure in isolation (1-based), or zero
    /// when backoff is off.
    pub fn backoff(&self, failures: u32) -> Duration {
        if self.backoff_initial.is_zero() || failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20);
        self.backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// Memory bounds of the detector, shared by all keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorLimits {
    /// Most (group, topic, partition) keys tracked at once; new keys beyond it pass
    /// untracked until idle keys are evicted.
    pub max_keys: usize,
    /// Most re-delivered offsets remembered per key (the oldest are dropped first).
    pub max_counts_per_key: usize,
    /// Most connections remembered per key.
    pub max_conns_per_key: usize,
    /// Most recent deliveries remembered per key (for first-delivery times).
    pub history_per_key: usize,
    /// A key in normal state with no call for this long is forgotten.
    pub evict_idle: Duration,
}

impl Default for DetectorLimits {
    fn default() -> Self {
        DetectorLimits {
            max_keys: 100_000,
            max_counts_per_key: 256,
            max_conns_per_key: 16,
            history_per_key: 32,
            evict_idle: Duration::from_secs(30 * 60),
        }
    }
}

/// A duration string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read duration {text:?}: {reason} (write it like \"30s\", \"1m30s\", \"500ms\")")]
pub struct DurationError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Reads `"30s"`, `"1m30s"`, `"250ms"`, `"2h"`, `"1d"` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let ms: u64 = s.parse().map_err(|_| err("number too large"))?;
        return Ok(Duration::from_millis(ms));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit (use ms, s, m, h, d)")),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| err("too long"))?;
        total = total.checked_add(part).ok_or_else(|| err("too long"))?;
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it: `"30s"`, `"1500ms"`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Serde adapter for duration fields: text or milliseconds in, text out.
mod duration_text {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"30s\" or a number of milliseconds")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_millis)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operator_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5").is_ok());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn empty_section_is_the_default_and_fields_override() {
        let cfg: DetectConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, DetectConfig::default());
        let cfg: DetectConfig = serde_json::from_str(
            r#"{"max_deliveries": 5, "stall_timeout": "2m", "backoff_initial": 500}"#,
        )
        .unwrap();
        assert_eq!(cfg.max_deliveries, 5);
        assert_eq!(cfg.stall_timeout, Duration::from_secs(120));
        assert_eq!(cfg.backoff_initial, Duration::from_millis(500));
        let back: DetectConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(serde_json::from_str::<DetectConfig>(r#"{"stall_timeout": "soon"}"#).is_err());
    }

    #[test]
    fn validate_names_the_key() {
        assert!(DetectConfig::default().validate().is_ok());
        let e = DetectConfig {
            max_deliveries: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "max_deliveries");
        assert!(e.to_string().contains("max_deliveries"));
        let e = DetectConfig {
            backoff_initial: Duration::from_secs(60),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "backoff_max");
        let e = DetectConfig {
            isolation_confirmations: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "isolation_confirmations");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cfg = DetectConfig {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            ..Default::default()
        };
        let got: Vec<u64> = (1..=5).map(|n| cfg.backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 5, 5]);
        assert_eq!(cfg.backoff(0), Duration::ZERO);
        assert_eq!(cfg.backoff(200), Duration::from_secs(5));
        assert_eq!(DetectConfig::default().backoff(3), Duration::ZERO);
    }
}
