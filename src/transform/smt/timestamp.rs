//! TimestampConverter: convert a timestamp (the whole value or one field) between unix
//! time (a number, precision from `unix.precision`), a formatted string (`format`, a Java
//! `SimpleDateFormat` pattern, UTC) and Connect's logical types, which schemaless JSON
//! carries as epoch milliseconds: `Timestamp` (as is), `Date` (midnight UTC of the day)
//! and `Time` (milliseconds since midnight UTC).

use serde_json::Value;

use crate::transform::date_format::DateFormat;
use crate::transform::errors::DataError;
use crate::transform::field_path::FieldPath;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{json_type, Side, Working};

/// Properties of TimestampConverter.
pub(crate) const PROPS: &[&str] = &[
    "target.type",
    "field",
    "format",
    "unix.precision",
    "field.syntax.version",
    "replace.null.with.default",
];

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

/// Unit of unix timestamps, in and out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl Precision {
    fn to_millis(self, n: i64) -> Option<i64> {
        match self {
            Precision::Seconds => n.checked_mul(1000),
            Precision::Milliseconds => Some(n),
            Precision::Microseconds => Some(n / 1000),
            Precision::Nanoseconds => Some(n / 1_000_000),
        }
    }

    fn in_unit(self, ms: i64) -> Option<i64> {
        match self {
            Precision::Seconds => Some(ms / 1000),
            Precision::Milliseconds => Some(ms),
            Precision::Microseconds => ms.checked_mul(1000),
            Precision::Nanoseconds => ms.checked_mul(1_000_000),
        }
    }
}

/// TimestampConverter$Key / TimestampConverter$Value.
#[derive(Debug)]
struct TimestampConverter {
    side: Side,
    target: Target,
    field: Option<FieldPath>,
    format: Option<DateFormat>,
    precision: Precision,
}

pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    let target_name = props.req_str("target.type")?;
    let target = match target_name.trim().to_ascii_lowercase().as_str() {
        "string" => Target::String,
        "unix" => Target::Unix,
        "date" => Target::Date,
        "time" => Target::Time,
        "timestamp" => Target::Timestamp,
        _ => {
            return Err(PropError::new(
                "target.type",
                "must be one of string, unix, Date, Time, Timestamp",
            ))
        }
    };
    let format = match props.opt_str("format") {
        Some(p) if !p.is_empty() => {
            Some(DateFormat::new(&p).map_err(|m| PropError::new("format", m))?)
        }
        _ => None,
    };
    if target == Target::String && format.is_none() {
        return Err(PropError::new(
            "format",
            "missing required property (target.type is string)",
        ));
    }
    let precision = match props
        .opt_str("unix.precision")
        .unwrap_or_else(|| "milliseconds".to_string())
        .trim()
    {
        "seconds" => Precision::Seconds,
        "milliseconds" => Precision::Milliseconds,
        "microseconds" => Precision::Microseconds,
        "nanoseconds" => Precision::Nanoseconds,
        _ => {
            return Err(PropError::new(
                "unix.precision",
                "must be one of seconds, milliseconds, microseconds, nanoseconds",
            ))
        }
    };
    let field = match props.opt_str("field") {
        Some(f) if !f.trim().is_empty() => Some(props.req_path("field")?),
        _ => None,
    };
    Ok(Box::new(TimestampConverter {
        side,
        target,
        field,
        format,
        precision,
    }))
}

impl TimestampConverter {
    fn to_millis(&self, value: &Value) -> Result<i64, String> {
        match value {
            Value::Number(n) => {
                let raw = n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .ok_or("a unix timestamp must be an integer")?;
                self.precision
                    .to_millis(raw)
                    .ok_or_else(|| "the unix timestamp is out of range".to_string())
            }
            Value::String(s) => match &self.format {
                Some(f) => f.parse_millis(s),
                None => Err("a string timestamp needs the format property".to_string()),
            },
            other => Err(format!(
                "TimestampConverter does not support a {} as a timestamp",
                json_type(other)
            )),
        }
    }

    fn convert(&self, value: &Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let ms = self.to_millis(value)?;
        Ok(match self.target {
            Target::Timestamp => Value::from(ms),
            Target::Date => Value::from(ms - ms.rem_euclid(DAY_MS)),
            Target::Time => Value::from(ms.rem_euclid(DAY_MS)),
            Target::Unix => Value::from(
                self.precision
                    .in_unit(ms)
                    .ok_or("the timestamp is out of range for the unix precision")?,
            ),
            Target::String => match &self.format {
                Some(f) => Value::from(f.format(ms)?),
                None => return Err("target string needs the format property".to_string()),
            },
        })
    }
}

impl Transform for TimestampConverter {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let Some(path) = &self.field else {
            w.update(self.side, |v| {
                let converted = self.convert(v).map_err(DataError::new)?;
                let changed = converted != *v;
                *v = converted;
                Ok(changed)
            })?;
            return Ok(Step::Continue);
        };
        w.update_object(self.side, "converting timestamp formats", |object| {
            object.update_path(path, |slot| {
                let converted = self
                    .convert(slot)
                    .map_err(|e| DataError::new(format!("field {}: {e}", path.as_str())))?;
                let changed = converted != *slot;
                if changed {
                    *slot = converted;
                }
                Ok(changed)
            })
        })?;
        Ok(Step::Continue)
    }
}
