//! The state of one record while a pipeline runs over it: the key and value parsed as
//! JSON at most once, the headers copied only when written, and nothing committed to the
//! record until the whole pipeline has passed (so a failure under
//! `errors.tolerance=none` leaves the record exactly as it came).
//!
//! An object key or value is parsed lazily ([`LazyObject`]): split into its top-level
//! fields, each parsed only when a transform touches it, and written back with the
//! untouched fields copied byte for byte. Transforms that need the whole value (and
//! nested values other than through a field path) get it parsed in full.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::errors::DataError;
use super::lazy_object::LazyObject;
use crate::protocol::record::{Header, Record};

/// Which part of the record a transform or check works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl Side {
    /// `key` or `value`, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }
}

/// Where a record's key or value stands.
#[derive(Debug)]
enum Slot<'r> {
    /// Not looked at yet; the record's bytes are current.
    Raw,
    /// A JSON object, split into fields that are parsed on demand.
    Object(LazyObject<'r>),
    /// Parsed as one value (not an object, or a transform needed all of it).
    Whole {
        /// The value.
        value: Value,
        /// Whether it differs from the record's bytes (re-encode on commit).
        dirty: bool,
    },
}

/// One record under work.
#[derive(Debug)]
pub(crate) struct Working<'r> {
    /// The record as it came in; never modified while the pipeline runs.
    pub record: &'r Record,
    /// Topic the record belongs to.
    pub topic: &'r str,
    /// Partition the record belongs to.
    pub partition: i32,
    /// Whether messages may quote payload values (`errors.log.include.messages`).
    pub show_values: bool,
    key: Slot<'r>,
    value: Slot<'r>,
    headers: Cow<'r, [Header]>,
}

/// What a pipeline changed, to be written into the record once everything passed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    key: Option<Option<Bytes>>,
    value: Option<Option<Bytes>>,
    headers: Option<Vec<Header>>,
}

impl Changes {
    /// Whether anything changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.key.is_none() && self.value.is_none() && self.headers.is_none()
    }

    /// Write the changes into the record.
    pub(crate) fn commit(self, record: &mut Record) {
        if let Some(k) = self.key {
            record.key = k;
        }
        if let Some(v) = self.value {
            record.value = v;
        }
        if let Some(h) = self.headers {
            record.headers = h;
        }
    }
}

impl<'r> Working<'r> {
    pub(crate) fn new(
        record: &'r Record,
        topic: &'r str,
        partition: i32,
        show_values: bool,
    ) -> Self {
        Working {
            record,
            topic,
            partition,
            show_values,
            key: Slot::Raw,
            value: Slot::Raw,
            headers: Cow::Borrowed(&record.headers),
        }
    }

    /// The original bytes of a side (checks run before any transform, so this is what the
    /// broker sent).
    pub(crate) fn original(&self, side: Side) -> Option<&'r Bytes> {
        match side {
            Side::Key => self.record.key.as_ref(),
            Side::Value => self.record.value.as_ref(),
        }
    }

    fn slot_mut(&mut self, side: Side) -> &mut Slot<'r> {
        match side {
            Side::Key => &mut self.key,
            Side::Value => &mut self.value,
        }
    }

    /// Parse a side if not parsed yet: an object into lazy fields, anything else whole.
    /// `Ok(false)` for a null key or value.
    fn ensure_parsed(&mut self, side: Side) -> Result<bool, DataError> {
        let raw = self.original(side);
        let slot = self.slot_mut(side);
        if let Slot::Raw = slot {
            let Some(bytes) = raw else {
                return Ok(false);
            };
            *slot = match LazyObject::parse(bytes) {
                Some(object) => Slot::Object(object),
                None => Slot::Whole {
                    value: parse_whole(bytes, side)?,
                    dirty: false,
                },
            };
        }
        Ok(true)
    }

    /// Parse a side as one value if not yet. `Ok(false)` for a null key or value.
    fn ensure_whole(&mut self, side: Side) -> Result<bool, DataError> {
        let raw = self.original(side);
        let slot = self.slot_mut(side);
        match std::mem::replace(slot, Slot::Raw) {
            Slot::Raw => {
                let Some(bytes) = raw else {
                    return Ok(false);
                };
                *slot = Slot::Whole {
                    value: parse_whole(bytes, side)?,
                    dirty: false,
                };
            }
            Slot::Object(object) => {
                let dirty = object.is_dirty();
                *slot = Slot::Whole {
                    value: object.into_value()?,
                    dirty,
                };
            }
            whole @ Slot::Whole { .. } => *slot = whole,
        }
        Ok(true)
    }

    /// Check that a side is JSON (a null key or value is fine).
    pub(crate) fn parse(&mut self, side: Side) -> Result<(), DataError> {
        self.ensure_parsed(side).map(|_| ())
    }

    /// The side as one JSON value, for reading; `None` for a Kafka null or a JSON
    /// `null`. Fails when the bytes are not JSON.
    pub(crate) fn whole(&mut self, side: Side) -> Result<Option<Cow<'_, Value>>, DataError> {
        if !self.ensure_parsed(side)? {
            return Ok(None);
        }
        Ok(match self.slot_mut(side) {
            Slot::Object(object) => Some(Cow::Owned(object.to_value()?)),
            Slot::Whole { value, .. } if !value.is_null() => Some(Cow::Borrowed(&*value)),
            _ => None,
        })
    }

    /// Run `f` on the side's JSON unless it is null; `f` returns whether it changed the
    /// value, and only then is the side re-encoded.
    pub(crate) fn update(
        &mut self,
        side: Side,
        f: impl FnOnce(&mut Value) -> Result<bool, DataError>,
    ) -> Result<(), DataError> {
        if !self.ensure_whole(side)? {
            return Ok(());
        }
        if let Slot::Whole { value, dirty } = self.slot_mut(side) {
            if !value.is_null() && f(value)? {
                *dirty = true;
            }
        }
        Ok(())
    }

    /// Run `f` on the side's top-level fields unless the side is null. A side that is not
    /// an object fails with Connect's message for `purpose`.
    pub(crate) fn update_object(
        &mut self,
        side: Side,
        purpose: &str,
        f: impl FnOnce(&mut LazyObject<'r>) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        if !self.ensure_parsed(side)? {
            return Ok(());
        }
        let slot = self.slot_mut(side);
        if let Slot::Whole { value, dirty } = slot {
            match value {
                Value::Null => return Ok(()),
                Value::Object(map) => {
                    let object = LazyObject::from_map(std::mem::take(map), *dirty);
                    *slot = Slot::Object(object);
                }
                other => return Err(object_error(other, purpose)),
            }
        }
        match slot {
            Slot::Object(object) => f(object),
            Slot::Raw | Slot::Whole { .. } => Ok(()),
        }
    }

    /// Replace a side with a new JSON value (`Value::Null` becomes a Kafka null).
    pub(crate) fn replace(&mut self, side: Side, value: Value) {
        *self.slot_mut(side) = Slot::Whole { value, dirty: true };
    }

    /// Whether the current value is null (Kafka null, or JSON null after a rewrite).
    pub(crate) fn value_is_null(&self) -> bool {
        match &self.value {
            Slot::Raw => self.record.value.is_none(),
            Slot::Object(_) => false,
            Slot::Whole { value, dirty } => *dirty && value.is_null(),
        }
    }

    /// The current headers.
    pub(crate) fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The headers for writing (copied from the record on first use).
    pub(crate) fn headers_mut(&mut self) -> &mut Vec<Header> {
        self.headers.to_mut()
    }

    /// Finish: what to write into the record.
    pub(crate) fn into_changes(self) -> Result<Changes, DataError> {
        let size = |b: Option<&Bytes>| b.map_or(0, Bytes::len);
        Ok(Changes {
            key: encode(self.key, size(self.record.key.as_ref()))?,
            value: encode(self.value, size(self.record.value.as_ref()))?,
            headers: match self.headers {
                Cow::Owned(h) => Some(h),
                Cow::Borrowed(_) => None,
            },
        })
    }
}

fn parse_whole(bytes: &[u8], side: Side) -> Result<Value, DataError> {
    serde_json::from_slice(bytes)
        .map_err(|e| DataError::new(format!("the record {} is not valid JSON: {e}", side.noun())))
}

/// The new bytes of a side, if it changed (`Some(None)`: it became a Kafka null).
/// `original_len` sizes the buffer.
fn encode(slot: Slot<'_>, original_len: usize) -> Result<Option<Option<Bytes>>, DataError> {
    match slot {
        Slot::Object(object) if object.is_dirty() => {
            let mut out = Vec::with_capacity(original_len + original_len / 8 + 64);
            object.write(&mut out)?;
            Ok(Some(Some(Bytes::from(out))))
        }
        Slot::Whole {
            value: Value::Null,
            dirty: true,
        } => Ok(Some(None)),
        Slot::Whole { value, dirty: true } => serde_json::to_vec(&value)
            .map(|b| Some(Some(Bytes::from(b))))
            .map_err(|e| DataError::new(format!("could not encode JSON: {e}"))),
        Slot::Raw | Slot::Object(_) | Slot::Whole { .. } => Ok(None),
    }
}

/// The JSON type of a value as schema users name it.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The JSON type with its article, for messages that must not quote the value:
/// `a string`, `an integer`, `null`.
pub(crate) fn type_phrase(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as an object, or Connect's error for a transform that needs one.
pub(crate) fn require_object<'v>(
    value: &'v mut Value,
    purpose: &str,
) -> Result<&'v mut Map<String, Value>, DataError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(object_error(other, purpose)),
    }
}

/// Connect's error for a transform that needs an object and got something else.
pub(crate) fn object_error(value: &Value, purpose: &str) -> DataError {
    DataError::new(format!(
        "Only objects are supported in the absence of a schema for [{purpose}], found: {}",
        json_type(value)
    ))
}
