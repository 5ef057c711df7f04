//! Cast: convert the whole value (`spec=int64`) or some fields (`spec=a:int32,b:string`)
//! to another primitive type, with Java's conversion rules (narrowing integers wrap,
//! floats truncate toward zero, strings are parsed strictly).

use serde_json::{Number, Value};

use crate::transform::errors::DataError;
use crate::transform::field_path::FieldPath;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{json_type, Side, Working};

/// Properties of Cast.
pub(crate) const PROPS: &[&str] = &["spec", "field.syntax.version", "replace.null.with.default"];

/// A target type of Cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl CastType {
    fn parse(name: &str) -> Option<CastType> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "int8" => CastType::Int8,
            "int16" => CastType::Int16,
            "int32" => CastType::Int32,
            "int64" => CastType::Int64,
            "float32" => CastType::Float32,
            "float64" => CastType::Float64,
            "boolean" => CastType::Boolean,
            "string" => CastType::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            CastType::Int8 => "int8",
            CastType::Int16 => "int16",
            CastType::Int32 => "int32",
            CastType::Int64 => "int64",
            CastType::Float32 => "float32",
            CastType::Float64 => "float64",
            CastType::Boolean => "boolean",
            CastType::String => "string",
        }
    }
}

/// What Cast converts.
#[derive(Debug)]
enum Spec {
    Whole(CastType),
    Fields(Vec<(FieldPath, CastType)>),
}

/// Cast$Key / Cast$Value.
#[derive(Debug)]
struct Cast {
    side: Side,
    spec: Spec,
}

const TYPES: &str = "int8, int16, int32, int64, float32, float64, boolean, string";

pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    let syntax = props.field_syntax()?;
    let items = props.req_list("spec")?;
    let bad_type = |t: &str| PropError::new("spec", format!("unknown type '{t}' (known: {TYPES})"));
    let spec = if items.len() == 1 && !items[0].contains(':') {
        Spec::Whole(CastType::parse(&items[0]).ok_or_else(|| bad_type(&items[0]))?)
    } else {
        let mut fields = Vec::with_capacity(items.len());
        for item in &items {
            let Some((field, ty)) = item.rsplit_once(':') else {
                return Err(PropError::new(
                    "spec",
                    format!("'{item}' is not of the form field:type"),
                ));
            };
            let path = FieldPath::parse(field, syntax).map_err(|m| PropError::new("spec", m))?;
            fields.push((path, CastType::parse(ty).ok_or_else(|| bad_type(ty))?));
        }
        Spec::Fields(fields)
    };
    Ok(Box::new(Cast { side, spec }))
}

/// Convert one value; the error says why without quoting the value.
pub(crate) fn cast_value(value: &Value, to: CastType) -> Result<Value, String> {
    let from = json_type(value);
    let fail = |why: &str| format!("cannot cast {from} to {}: {why}", to.name());
    match value {
        Value::Null => return Ok(Value::Null),
        Value::Array(_) | Value::Object(_) => {
            return Err(format!(
                "Cast transformation does not support casting from {from}"
            ))
        }
        _ => {}
    }
    let int = |bits: u32| -> Result<Value, String> {
        let wide: i64 = match value {
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i,
                (None, Some(u), _) => u as i64,
                // Java: (int) for narrow types, (long) for int64; both saturate.
                (None, None, Some(f)) if bits < 64 => (f as i32) as i64,
                (None, None, Some(f)) => f as i64,
                _ => return Err(fail("not a number")),
            },
            Value::Bool(b) => i64::from(*b),
            Value::String(s) => {
                let parsed = match bits {
                    8 => s.parse::<i8>().map(i64::from).ok(),
                    16 => s.parse::<i16>().map(i64::from).ok(),
                    32 => s.parse::<i32>().map(i64::from).ok(),
                    _ => s.parse::<i64>().ok(),
                };
                return parsed
                    .map(Value::from)
                    .ok_or_else(|| fail("the string is not an integer in range"));
            }
            _ => return Err(fail("unsupported type")),
        };
        // Java's narrowing conversions wrap.
        Ok(Value::from(match bits {
            8 => i64::from(wide as i8),
            16 => i64::from(wide as i16),
            32 => i64::from(wide as i32),
            _ => wide,
        }))
    };
    let float = |single: bool| -> Result<Value, String> {
        let f: f64 = match value {
            Value::Number(n) => n.as_f64().ok_or_else(|| fail("not a number"))?,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| fail("the string is not a number"))?,
            _ => return Err(fail("unsupported type")),
        };
        let f = if single {
            // Keep the float32's shortest decimal form (1.1, not 1.100000023841858).
            (f as f32).to_string().parse::<f64>().unwrap_or(f)
        } else {
            f
        };
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| fail("the result is not a finite number"))
    };
    match to {
        CastType::Int8 => int(8),
        CastType::Int16 => int(16),
        CastType::Int32 => int(32),
        CastType::Int64 => int(64),
        CastType::Float32 => float(true),
        CastType::Float64 => float(false),
        CastType::Boolean => match value {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            // Java: Number.longValue() != 0.
            Value::Number(n) => Ok(Value::Bool(match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i != 0,
                (None, Some(u), _) => u != 0,
                (None, None, Some(f)) => (f as i64) != 0,
                _ => false,
            })),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(fail("the string is neither true nor false")),
            },
            _ => Err(fail("unsupported type")),
        },
        CastType::String => match value {
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(fail("unsupported type")),
        },
    }
}

impl Transform for Cast {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let fields = match &self.spec {
            Spec::Fields(fields) => fields,
            Spec::Whole(to) => {
                w.update(self.side, |v| {
                    let cast = cast_value(v, *to).map_err(DataError::new)?;
                    let changed = cast != *v;
                    *v = cast;
                    Ok(changed)
                })?;
                return Ok(Step::Continue);
            }
        };
        w.update_object(self.side, "cast types", |object| {
            for (path, to) in fields {
                object.update_path(path, |slot| {
                    let cast = cast_value(slot, *to)
                        .map_err(|e| DataError::new(format!("field {}: {e}", path.as_str())))?;
                    let changed = cast != *slot;
                    if changed {
                        *slot = cast;
                    }
                    Ok(changed)
                })?;
            }
            Ok(())
        })?;
        Ok(Step::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_java_conversions() {
        let cases: &[(Value, CastType, Result<Value, ()>)] = &[
            (json!(300), CastType::Int8, Ok(json!(44))),
            (json!(-129), CastType::Int8, Ok(json!(127))),
            (json!(70000), CastType::Int16, Ok(json!(4464))),
            (json!(3.99), CastType::Int32, Ok(json!(3))),
            (json!(-3.99), CastType::Int64, Ok(json!(-3))),
            (json!(1e20), CastType::Int32, Ok(json!(i32::MAX))),
            (json!(true), CastType::Int32, Ok(json!(1))),
            (json!("42"), CastType::Int16, Ok(json!(42))),
            (json!("+7"), CastType::Int32, Ok(json!(7))),
            (json!("128"), CastType::Int8, Err(())),
            (json!("4.5"), CastType::Int64, Err(())),
            (json!("abc"), CastType::Int32, Err(())),
            (json!(1.1), CastType::Float32, Ok(json!(1.1))),
            (json!("2.5"), CastType::Float64, Ok(json!(2.5))),
            (json!(7), CastType::Float64, Ok(json!(7.0))),
            (json!(0.5), CastType::Boolean, Ok(json!(false))),
            (json!(2), CastType::Boolean, Ok(json!(true))),
            (json!("TRUE"), CastType::Boolean, Ok(json!(true))),
            (json!("yes"), CastType::Boolean, Err(())),
            (json!(12.5), CastType::String, Ok(json!("12.5"))),
            (json!(false), CastType::String, Ok(json!("false"))),
            (json!("é"), CastType::String, Ok(json!("é"))),
            (json!(null), CastType::Int32, Ok(json!(null))),
            (json!({"a": 1}), CastType::String, Err(())),
            (json!([1]), CastType::Int32, Err(())),
        ];
        for (input, to, want) in cases {
            let got = cast_value(input, *to);
            match want {
                Ok(w) => assert_eq!(got.as_ref().ok(), Some(w), "{input} -> {to:?}: {got:?}"),
                Err(()) => assert!(got.is_err(), "{input} -> {to:?} should fail: {got:?}"),
            }
        }
    }

    #[test]
    fn error_does_not_quote_the_value() {
        let err = cast_value(&json!("secret-text"), CastType::Int32).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("string") && err.contains("int32"), "{err}");
    }
}
