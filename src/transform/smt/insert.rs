//! InsertField: add the record's topic, partition, offset, timestamp or a static string
//! to a JSON object key or value.

use serde_json::Value;

use crate::transform::errors::DataError;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{Side, Working};

/// Properties of InsertField.
pub(crate) const PROPS: &[&str] = &[
    "topic.field",
    "partition.field",
    "offset.field",
    "timestamp.field",
    "static.field",
    "static.value",
    "replace.null.with.default",
];

/// InsertField$Key / InsertField$Value.
#[derive(Debug)]
struct InsertField {
    side: Side,
    topic: Option<String>,
    partition: Option<String>,
    offset: Option<String>,
    timestamp: Option<String>,
    static_field: Option<(String, String)>,
}

/// Connect allows a `!` (required) or `?` (optional) suffix, which only matters with
/// schemas.
fn field_name(props: &Props, name: &str) -> Option<String> {
    props.opt_str(name).and_then(|s| {
        let s = s.trim().trim_end_matches(['!', '?']).to_string();
        (!s.is_empty()).then_some(s)
    })
}

pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    let static_field = match (
        field_name(props, "static.field"),
        props.opt_str("static.value"),
    ) {
        (Some(f), Some(v)) => Some((f, v)),
        (Some(_), None) => {
            return Err(PropError::new(
                "static.value",
                "missing required property (static.field is set)",
            ))
        }
        (None, Some(_)) => {
            return Err(PropError::new(
                "static.field",
                "missing required property (static.value is set)",
            ))
        }
        (None, None) => None,
    };
    let t = InsertField {
        side,
        topic: field_name(props, "topic.field"),
        partition: field_name(props, "partition.field"),
        offset: field_name(props, "offset.field"),
        timestamp: field_name(props, "timestamp.field"),
        static_field,
    };
    if t.topic.is_none()
        && t.partition.is_none()
        && t.offset.is_none()
        && t.timestamp.is_none()
        && t.static_field.is_none()
    {
        return Err(PropError::new(
            "type",
            "InsertField needs at least one of topic.field, partition.field, offset.field, timestamp.field, static.field",
        ));
    }
    Ok(Box::new(t))
}

impl Transform for InsertField {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let topic = w.topic;
        let partition = w.partition;
        let offset = w.record.offset;
        let timestamp = w.record.timestamp;
        w.update_object(self.side, "field insertion", |map| {
            if let Some(f) = &self.topic {
                map.insert(f, Value::from(topic));
            }
            if let Some(f) = &self.partition {
                map.insert(f, Value::from(partition));
            }
            if let Some(f) = &self.offset {
                map.insert(f, Value::from(offset));
            }
            if let Some(f) = &self.timestamp {
                // Kafka's -1 means "no timestamp"; Connect inserts null then.
                let ts = if timestamp < 0 {
                    Value::Null
                } else {
                    Value::from(timestamp)
                };
                map.insert(f, ts);
            }
            if let Some((f, v)) = &self.static_field {
                map.insert(f, Value::from(v.as_str()));
            }
            Ok(())
        })?;
        Ok(Step::Continue)
    }
}
