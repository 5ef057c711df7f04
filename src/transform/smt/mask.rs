//! MaskField: replace fields with a type-appropriate empty value (`""`, `0`, `false`, `[]`,
//! `{}`) or with a configured replacement.

use serde_json::{Map, Number, Value};

use crate::transform::errors::DataError;
use crate::transform::field_path::FieldPath;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{json_type, Side, Working};

/// Properties of MaskField.
pub(crate) const PROPS: &[&str] = &[
    "fields",
    "replacement",
    "field.syntax.version",
    "replace.null.with.default",
];

/// MaskField$Key / MaskField$Value.
#[derive(Debug)]
struct MaskField {
    side: Side,
    fields: Vec<FieldPath>,
    replacement: Option<String>,
}

pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    Ok(Box::new(MaskField {
        side,
        fields: props.paths("fields", true)?,
        replacement: props.opt_str("replacement"),
    }))
}

impl MaskField {
    fn masked(&self, field: &FieldPath, value: &Value) -> Result<Value, DataError> {
        let Some(replacement) = &self.replacement else {
            return Ok(match value {
                Value::Null => Value::Null,
                Value::Bool(_) => Value::Bool(false),
                Value::Number(n) if n.is_f64() => Value::from(0.0),
                Value::Number(_) => Value::from(0),
                Value::String(_) => Value::from(""),
                Value::Array(_) => Value::Array(Vec::new()),
                Value::Object(_) => Value::Object(Map::new()),
            });
        };
        let bad = || {
            DataError::new(format!(
                "Cannot mask field {} of type {} with the custom replacement",
                field.as_str(),
                json_type(value)
            ))
        };
        match value {
            Value::Null => Ok(Value::Null),
            Value::String(_) => Ok(Value::from(replacement.as_str())),
            Value::Number(n) if n.is_f64() => replacement
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad),
            Value::Number(_) => replacement
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| bad()),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(bad()),
        }
    }
}

impl Transform for MaskField {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        w.update_object(self.side, "masking fields", |object| {
            for field in &self.fields {
                // Absent fields stay absent (Connect would add them as null).
                object.update_path(field, |slot| {
                    let masked = self.masked(field, slot)?;
                    let changed = *slot != masked;
                    if changed {
                        *slot = masked;
                    }
                    Ok(changed)
                })?;
            }
            Ok(())
        })?;
        Ok(Step::Continue)
    }
}
