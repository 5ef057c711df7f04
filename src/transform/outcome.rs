//! What a pipeline says about one record: pass (maybe rewritten), filtered, or failed, and
//! for a failure the Kafka Connect vocabulary (stage, class, exception) that the
//! dead-letter writer puts into context headers and that operators grep logs for.

use std::fmt;

/// Exception class Connect reports for data that a converter or transform cannot handle.
pub const DATA_EXCEPTION: &str = "org.apache.kafka.connect.errors.DataException";
/// Exception class a Confluent deserializer reports for a bad wire format or an unknown
/// schema id.
pub const SERIALIZATION_EXCEPTION: &str = "org.apache.kafka.common.errors.SerializationException";

/// The Connect stage a failure happened in (`__connect.errors.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A check on the record key failed (Connect's key converter).
    KeyConverter,
    /// A check on the record value failed (Connect's value converter).
    ValueConverter,
    /// A header could not be converted.
    HeaderConverter,
    /// A single message transform failed.
    Transformation,
}

impl Stage {
    /// The stage name exactly as Connect writes it (the dead-letter format's spelling).
    pub fn as_str(self) -> &'static str {
        crate::dead_letter::Stage::from(self).as_str()
    }
}

impl From<Stage> for crate::dead_letter::Stage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::KeyConverter => crate::dead_letter::Stage::KeyConverter,
            Stage::ValueConverter => crate::dead_letter::Stage::ValueConverter,
            Stage::HeaderConverter => crate::dead_letter::Stage::HeaderConverter,
            Stage::Transformation => crate::dead_letter::Stage::Transformation,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record failed a check or a transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Connect stage (`__connect.errors.stage`).
    pub stage: Stage,
    /// Class of the failing transform or check, e.g.
    /// `org.apache.kafka.connect.transforms.MaskField$Value` (`__connect.errors.class.name`).
    pub class_name: String,
    /// Java-style exception class (`__connect.errors.exception.class.name`).
    pub exception_class: &'static str,
    /// A person-readable reason. It names fields and types, never payload values, unless
    /// the pipeline has `errors.log.include.messages=true`.
    pub message: String,
    /// `true` under `errors.tolerance=all`: the record must not reach the consumer and goes
    /// to the dead-letter topic (or is dropped when none is configured). `false` under
    /// `errors.tolerance=none`: the record was left unchanged and passes; the failure is
    /// only logged and counted.
    pub tolerated: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed in {} ({}): {}",
            self.class_name, self.stage, self.exception_class, self.message
        )
    }
}

/// The result of running a pipeline over one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record goes on to the consumer.
    Pass {
        /// Whether key, value or headers were rewritten (the batch must be re-encoded).
        changed: bool,
        /// Set when a check could not be completed for a reason that is not the record's
        /// fault (schema registry unreachable, schema not usable): the record passed
        /// without that check. The text names the check and the reason; count it.
        unverified: Option<String>,
    },
    /// A `Filter` transform dropped the record: hide it from the consumer, no dead letter.
    Filtered,
    /// A check or transform failed; see [`Failure::tolerated`] for what to do with it.
    Failed(Failure),
}

impl Outcome {
    /// A pass that changed nothing and verified everything.
    pub fn unchanged() -> Self {
        Outcome::Pass {
            changed: false,
            unverified: None,
        }
    }

    /// Whether the consumer should receive the record (possibly rewritten).
    pub fn delivers(&self) -> bool {
        match self {
            Outcome::Pass { .. } => true,
            Outcome::Filtered => false,
            Outcome::Failed(f) => !f.tolerated,
        }
    }
}
