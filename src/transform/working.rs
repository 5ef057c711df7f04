//! The state of one record while a pipeline runs over it: the key and value parsed as
//! JSON at most once, the headers copied only when written, and nothing committed to the
//! record until the whole pipeline has passed (so a failure under
//! `errors.tolerance=none` leaves the record exactly as it came).

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;

use crate::record::{Header, Record};

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

/// A data error raised by a transform or check: becomes Connect's `DataException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataError(pub String);

impl DataError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DataError(message.into())
    }
}

/// Where a record's key or value stands.
#[derive(Debug)]
enum Slot {
    /// Not parsed yet; the record's bytes are current.
    Raw,
    /// Parsed; unchanged since.
    Parsed(Value),
    /// Rewritten; must be re-encoded on commit.
    Dirty(Value),
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
    key: Slot,
    value: Slot,
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

    fn raw(&self, side: Side) -> Option<&'r Bytes> {
        match side {
            Side::Key => self.record.key.as_ref(),
            Side::Value => self.record.value.as_ref(),
        }
    }

    /// The original bytes of a side (checks run before any transform, so this is what the
    /// broker sent).
    pub(crate) fn original(&self, side: Side) -> Option<&'r Bytes> {
        self.raw(side)
    }

    fn slot_mut(&mut self, side: Side) -> &mut Slot {
        match side {
            Side::Key => &mut self.key,
            Side::Value => &mut self.value,
        }
    }

    /// Parse a side if not parsed yet. `Ok(false)` for a null key or value.
    fn ensure_parsed(&mut self, side: Side) -> Result<bool, DataError> {
        let raw = self.raw(side);
        let slot = self.slot_mut(side);
        if let Slot::Raw = slot {
            let Some(bytes) = raw else {
                return Ok(false);
            };
            let value: Value = serde_json::from_slice(bytes).map_err(|e| {
                DataError::new(format!("the record {} is not valid JSON: {e}", side.noun()))
            })?;
            *slot = Slot::Parsed(value);
        }
        Ok(true)
    }

    /// The side as JSON; `None` for a Kafka null or a JSON `null` (both are "no value" to
    /// Connect's transforms). Fails when the bytes are not JSON.
    pub(crate) fn json(&mut self, side: Side) -> Result<Option<&Value>, DataError> {
        if !self.ensure_parsed(side)? {
            return Ok(None);
        }
        Ok(match self.slot_mut(side) {
            Slot::Parsed(v) | Slot::Dirty(v) if !v.is_null() => Some(&*v),
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
        if !self.ensure_parsed(side)? {
            return Ok(());
        }
        let slot = self.slot_mut(side);
        let changed = match slot {
            Slot::Parsed(v) | Slot::Dirty(v) if !v.is_null() => f(v)?,
            _ => false,
        };
        if changed {
            *slot = match std::mem::replace(slot, Slot::Raw) {
                Slot::Parsed(v) | Slot::Dirty(v) => Slot::Dirty(v),
                Slot::Raw => Slot::Raw,
            };
        }
        Ok(())
    }

    /// Replace a side with a new JSON value (`Value::Null` becomes a Kafka null).
    pub(crate) fn replace(&mut self, side: Side, value: Value) {
        *self.slot_mut(side) = Slot::Dirty(value);
    }

    /// Whether the current value is null (Kafka null or JSON null after a rewrite).
    pub(crate) fn value_is_null(&self) -> bool {
        match &self.value {
            Slot::Raw => self.record.value.is_none(),
            Slot::Parsed(_) => false,
            Slot::Dirty(v) => v.is_null(),
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
        Ok(Changes {
            key: encode(self.key)?,
            value: encode(self.value)?,
            headers: match self.headers {
                Cow::Owned(h) => Some(h),
                Cow::Borrowed(_) => None,
            },
        })
    }
}

fn encode(slot: Slot) -> Result<Option<Option<Bytes>>, DataError> {
    match slot {
        Slot::Dirty(Value::Null) => Ok(Some(None)),
        Slot::Dirty(v) => serde_json::to_vec(&v)
            .map(|b| Some(Some(Bytes::from(b))))
            .map_err(|e| DataError::new(format!("could not encode JSON: {e}"))),
        Slot::Raw | Slot::Parsed(_) => Ok(None),
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
