//! Transforms that move whole values around: ValueToKey (key from value fields),
//! ExtractField (replace an object by one of its fields) and HoistField (wrap a value in
//! an object).

use serde_json::{Map, Value};

use crate::transform::errors::DataError;
use crate::transform::field_path::FieldPath;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{Side, Working};

/// Properties of ValueToKey.
pub(crate) const VALUE_TO_KEY_PROPS: &[&str] = &["fields", "replace.null.with.default"];
/// Properties of ExtractField.
pub(crate) const EXTRACT_PROPS: &[&str] =
    &["field", "field.syntax.version", "replace.null.with.default"];
/// Properties of HoistField.
pub(crate) const HOIST_PROPS: &[&str] = &["field"];

/// ValueToKey: the key becomes an object of the named value fields.
#[derive(Debug)]
struct ValueToKey {
    fields: Vec<String>,
}

pub(crate) fn build_value_to_key(
    props: &Props,
    _side: Side,
) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    Ok(Box::new(ValueToKey {
        fields: props.req_list("fields")?,
    }))
}

impl Transform for ValueToKey {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let mut key = None;
        w.update_object(Side::Value, "copying fields from value to key", |object| {
            let mut map = Map::with_capacity(self.fields.len());
            for f in &self.fields {
                // A missing field becomes null, as in Connect.
                map.insert(f.clone(), object.get(f)?.cloned().unwrap_or(Value::Null));
            }
            key = Some(map);
            Ok(())
        })?;
        if let Some(key) = key {
            w.replace(Side::Key, Value::Object(key));
        }
        Ok(Step::Continue)
    }
}

/// ExtractField: an object is replaced by one of its fields (a missing field gives null).
#[derive(Debug)]
struct ExtractField {
    side: Side,
    field: FieldPath,
}

pub(crate) fn build_extract(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    Ok(Box::new(ExtractField {
        side,
        field: props.req_path("field")?,
    }))
}

impl Transform for ExtractField {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let mut extracted = None;
        w.update_object(self.side, "field extraction", |object| {
            extracted = Some(
                object
                    .get_path(&self.field)?
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            Ok(())
        })?;
        if let Some(extracted) = extracted {
            w.replace(self.side, extracted);
        }
        Ok(Step::Continue)
    }
}

/// HoistField: the value is wrapped as `{field: value}`.
#[derive(Debug)]
struct HoistField {
    side: Side,
    field: String,
}

pub(crate) fn build_hoist(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    Ok(Box::new(HoistField {
        side,
        field: props.req_str("field")?.trim().to_string(),
    }))
}

impl Transform for HoistField {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        w.update(self.side, |v| {
            let inner = std::mem::take(v);
            let mut map = Map::with_capacity(1);
            map.insert(self.field.clone(), inner);
            *v = Value::Object(map);
            Ok(true)
        })?;
        Ok(Step::Continue)
    }
}
