//! Masking of the copy of a record written to the dead-letter topic: the DLQ keeps
//! debugging data for a long time, so personal-data policy applies to it too.
//!
//! ```yaml
//! dlq_mask:
//!   fields: [email, card.number, items.iban]   # replaced by `replacement`
//!   replacement: "****"                        # default "****"; any JSON value
//!   drop_fields: [ssn]                         # removed
//!   key_fields: [customer.email]               # same, in the key
//!   key_drop_fields: []
//!   drop_headers: [authorization]
//!   unparseable: drop                          # or keep: a value that is not JSON
//! ```
//!
//! Paths are dotted (backticks quote a name with dots) and walk into every element of
//! the arrays they meet. Absent fields are left absent.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ConfigError;
use super::field_path::{FieldPath, FieldSyntax};
use crate::protocol::record::Record;

/// What to do with a key or value that has fields to mask but is not JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unparseable {
    /// Replace it with null: nothing unmasked reaches the DLQ (the default).
    #[default]
    Drop,
    /// Keep the bytes as they are.
    Keep,
}

/// The `dlq_mask` section of a pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Value fields replaced by `replacement`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Value fields removed.
    #[serde(default)]
    pub drop_fields: Vec<String>,
    /// Key fields replaced by `replacement`.
    #[serde(default)]
    pub key_fields: Vec<String>,
    /// Key fields removed.
    #[serde(default)]
    pub key_drop_fields: Vec<String>,
    /// What masked fields become (default the string `****`).
    #[serde(default = "default_replacement")]
    pub replacement: Value,
    /// Header keys removed.
    #[serde(default)]
    pub drop_headers: Vec<String>,
    /// What happens to a key or value with fields to mask that is not JSON.
    #[serde(default)]
    pub unparseable: Unparseable,
}

fn default_replacement() -> Value {
    Value::from("****")
}

impl MaskConfig {
    /// Check every path; the error key is relative (`fields[2]`), the caller prefixes it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let lists = [
            ("fields", &self.fields),
            ("drop_fields", &self.drop_fields),
            ("key_fields", &self.key_fields),
            ("key_drop_fields", &self.key_drop_fields),
        ];
        for (name, list) in lists {
            for (i, p) in list.iter().enumerate() {
                FieldPath::parse(p, FieldSyntax::V2)
                    .map_err(|m| ConfigError::new(format!("{name}[{i}]"), m))?;
            }
        }
        for (i, h) in self.drop_headers.iter().enumerate() {
            if h.is_empty() {
                return Err(ConfigError::new(
                    format!("drop_headers[{i}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

/// What [`mask_for_dlq`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskReport {
    /// Fields replaced or removed.
    pub fields: usize,
    /// Headers removed.
    pub headers: usize,
    /// Whether the key was replaced by null because it was not JSON.
    pub key_dropped: bool,
    /// Whether the value was replaced by null because it was not JSON.
    pub value_dropped: bool,
}

/// Mask the dead-letter copy of a record in place. Never fails: what cannot be parsed is
/// dropped or kept as `unparseable` says.
pub fn mask_for_dlq(config: &MaskConfig, record: &mut Record) -> MaskReport {
    let mut report = MaskReport::default();
    let before = record.headers.len();
    record
        .headers
        .retain(|h| !config.drop_headers.contains(&h.key));
    report.headers = before - record.headers.len();
    let (n, dropped) = mask_side(
        &mut record.key,
        &config.key_fields,
        &config.key_drop_fields,
        config,
    );
    report.fields += n;
    report.key_dropped = dropped;
    let (n, dropped) = mask_side(
        &mut record.value,
        &config.fields,
        &config.drop_fields,
        config,
    );
    report.fields += n;
    report.value_dropped = dropped;
    report
}

fn mask_side(
    slot: &mut Option<Bytes>,
    mask: &[String],
    drop: &[String],
    config: &MaskConfig,
) -> (usize, bool) {
    if mask.is_empty() && drop.is_empty() {
        return (0, false);
    }
    let Some(bytes) = slot.as_ref() else {
        return (0, false);
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
        return match config.unparseable {
            Unparseable::Drop => {
                *slot = None;
                (0, true)
            }
            Unparseable::Keep => (0, false),
        };
    };
    let mut count = 0;
    let paths = mask
        .iter()
        .map(|p| (p, false))
        .chain(drop.iter().map(|p| (p, true)));
    for (text, remove) in paths {
        // Paths were validated with the configuration; an invalid one masks nothing.
        let Ok(path) = FieldPath::parse(text, FieldSyntax::V2) else {
            continue;
        };
        path.for_each_parent(&mut value, &mut |map, leaf| {
            if remove {
                if map.shift_remove(leaf).is_some() {
                    count += 1;
                }
            } else if let Some(slot) = map.get_mut(leaf) {
                *slot = config.replacement.clone();
                count += 1;
            }
        });
    }
    if count > 0 {
        match serde_json::to_vec(&value) {
            Ok(b) => *slot = Some(Bytes::from(b)),
            Err(_) => *slot = None,
        }
    }
    (count, false)
}
