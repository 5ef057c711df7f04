//! The schema-registry check: the bytes are in Confluent's wire format (magic byte 0,
//! 4-byte big-endian schema id, payload), the id is allowed, and, with a registry, the
//! registry knows it and the payload decodes against it (JSON Schema and Avro; other
//! schema types are checked by id only).

use std::sync::Arc;

use super::json_schema;
use super::outcome::{DATA_EXCEPTION, SERIALIZATION_EXCEPTION};
use super::registry::{Lookup, RegisteredSchema, RegistryClient};

/// Length of the wire-format prefix.
const PREFIX: usize = 5;

/// The schema id of wire-format bytes, if they have the prefix.
pub(crate) fn schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Fine.
    Pass,
    /// Could not be checked, not the record's fault; the text says why.
    Unverified(String),
    /// The record is bad.
    Fail {
        /// Java exception class to report.
        exception: &'static str,
        /// Why, in words.
        message: String,
    },
}

fn fail(exception: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::Fail {
        exception,
        message: message.into(),
    }
}

/// A compiled schema-registry check.
#[derive(Debug)]
pub(crate) struct RegistryCheck {
    /// Allowed ids, sorted; empty = any.
    pub allowed: Vec<u32>,
    /// The registry, if ids must be known to it.
    pub client: Option<Arc<RegistryClient>>,
}

impl RegistryCheck {
    /// Whether `id` passes the allowed-ids test.
    pub(crate) fn allows(&self, id: u32) -> bool {
        self.allowed.is_empty() || self.allowed.binary_search(&id).is_ok()
    }

    /// Check one key or value (`noun` is `key` or `value`).
    pub(crate) fn check(&self, bytes: &[u8], noun: &str, show_values: bool) -> Verdict {
        let Some(id) = schema_id(bytes) else {
            let why = if bytes.len() < PREFIX {
                format!(
                    "the record {noun} is {} bytes, shorter than the 5-byte schema-registry prefix",
                    bytes.len()
                )
            } else {
                format!("Unknown magic byte! The record {noun} does not start with the schema-registry magic byte 0")
            };
            return fail(SERIALIZATION_EXCEPTION, why);
        };
        if !self.allows(id) {
            return fail(
                SERIALIZATION_EXCEPTION,
                format!("schema id {id} of the record {noun} is not one of the allowed ids"),
            );
        }
        let Some(client) = &self.client else {
            return Verdict::Pass;
        };
        let payload = &bytes[PREFIX..];
        match client.lookup(id) {
            Lookup::NotFound => fail(
                SERIALIZATION_EXCEPTION,
                format!("schema id {id} of the record {noun} is unknown to the schema registry"),
            ),
            Lookup::Unavailable(reason) => Verdict::Unverified(format!(
                "schema id {id} could not be looked up at {}: {reason}",
                client.url()
            )),
            Lookup::NotResolved => Verdict::Unverified(format!(
                "schema id {id} was not resolved before the check (prepare was not awaited)"
            )),
            Lookup::Known(schema) => match schema.as_ref() {
                RegisteredSchema::Json(validator) => {
                    let value: serde_json::Value = match serde_json::from_slice(payload) {
                        Ok(v) => v,
                        Err(e) => {
                            return fail(
                                DATA_EXCEPTION,
                                format!(
                                    "the record {noun} after the schema id is not valid JSON: {e}"
                                ),
                            )
                        }
                    };
                    match json_schema::violations(validator, &value, show_values) {
                        None => Verdict::Pass,
                        Some(m) => fail(DATA_EXCEPTION, format!("schema {id}: {m}")),
                    }
                }
                RegisteredSchema::Avro(schema) => match decode_avro(schema, payload) {
                    Ok(()) => Verdict::Pass,
                    Err(e) if show_values => fail(
                        DATA_EXCEPTION,
                        format!("the record {noun} does not decode against Avro schema {id}: {e}"),
                    ),
                    Err(_) => fail(
                        DATA_EXCEPTION,
                        format!("the record {noun} does not decode against Avro schema {id}"),
                    ),
                },
                RegisteredSchema::Other => Verdict::Pass,
                RegisteredSchema::Unusable(reason) => {
                    Verdict::Unverified(format!("schema id {id} cannot be used: {reason}"))
                }
            },
        }
    }
}

/// Decode one Avro datum, require that it uses every byte and that the decoded value
/// fits the schema (the decoder turns a string cut short into a null instead of failing).
fn decode_avro(schema: &apache_avro::Schema, payload: &[u8]) -> Result<(), String> {
    let mut reader = payload;
    let value =
        apache_avro::from_avro_datum(schema, &mut reader, None).map_err(|e| e.to_string())?;
    if !reader.is_empty() {
        return Err(format!("{} bytes are left after the datum", reader.len()));
    }
    if !value.validate(schema) {
        return Err("the payload ends early".to_string());
    }
    Ok(())
}
