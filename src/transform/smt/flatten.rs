//! Flatten: nested objects become top-level fields whose names join the path with a
//! delimiter (`.` by default). Arrays and scalars are kept as they are.

use serde_json::{Map, Value};

use crate::transform::errors::DataError;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::require_object;
use crate::transform::working::{Side, Working};

/// Properties of Flatten.
pub(crate) const PROPS: &[&str] = &["delimiter"];

/// Flatten$Key / Flatten$Value.
#[derive(Debug)]
struct Flatten {
    side: Side,
    delimiter: String,
}

pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    Ok(Box::new(Flatten {
        side,
        delimiter: props
            .opt_str("delimiter")
            .unwrap_or_else(|| ".".to_string()),
    }))
}

fn flatten_into(
    prefix: &str,
    delimiter: &str,
    map: Map<String, Value>,
    out: &mut Map<String, Value>,
) {
    for (k, v) in map {
        let name = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}{delimiter}{k}")
        };
        match v {
            Value::Object(inner) => flatten_into(&name, delimiter, inner, out),
            other => {
                out.insert(name, other);
            }
        }
    }
}

impl Transform for Flatten {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        w.update(self.side, |v| {
            let map = require_object(v, "flattening")?;
            if !map.values().any(Value::is_object) {
                return Ok(false);
            }
            let old = std::mem::take(map);
            let mut out = Map::with_capacity(old.len());
            flatten_into("", &self.delimiter, old, &mut out);
            *map = out;
            Ok(true)
        })?;
        Ok(Step::Continue)
    }
}
