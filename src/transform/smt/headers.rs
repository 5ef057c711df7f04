//! Header transforms: InsertHeader (add a literal header), DropHeaders (remove headers by
//! key) and HeaderFrom (copy or move fields of the key or value into headers).
//!
//! Header values written from JSON fields are encoded as Connect's
//! `SimpleHeaderConverter` does: strings as their UTF-8 text, null as a null header
//! value, anything else as JSON text.

use bytes::Bytes;
use serde_json::Value;

use crate::protocol::record::Header;
use crate::transform::errors::DataError;
use crate::transform::field_path::FieldPath;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{Side, Working};

/// Properties of InsertHeader.
pub(crate) const INSERT_PROPS: &[&str] = &["header", "value.literal"];
/// Properties of DropHeaders.
pub(crate) const DROP_PROPS: &[&str] = &["headers"];
/// Properties of HeaderFrom.
pub(crate) const FROM_PROPS: &[&str] = &[
    "fields",
    "headers",
    "operation",
    "field.syntax.version",
    "replace.null.with.default",
];

/// InsertHeader: append a header with a literal value.
#[derive(Debug)]
struct InsertHeader {
    header: String,
    value: Bytes,
}

pub(crate) fn build_insert(props: &Props, _side: Side) -> Result<Box<dyn Transform>, PropError> {
    let header = props.req_str("header")?;
    let value = props
        .opt_str("value.literal")
        .ok_or_else(|| PropError::new("value.literal", "missing required property"))?;
    Ok(Box::new(InsertHeader {
        header,
        value: Bytes::from(value),
    }))
}

impl Transform for InsertHeader {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        w.headers_mut()
            .push(Header::new(self.header.clone(), self.value.clone()));
        Ok(Step::Continue)
    }
}

/// DropHeaders: remove every header with one of the keys.
#[derive(Debug)]
struct DropHeaders {
    headers: Vec<String>,
}

pub(crate) fn build_drop(props: &Props, _side: Side) -> Result<Box<dyn Transform>, PropError> {
    Ok(Box::new(DropHeaders {
        headers: props.req_list("headers")?,
    }))
}

impl Transform for DropHeaders {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let drops = |h: &Header| self.headers.contains(&h.key);
        if w.headers().iter().any(drops) {
            w.headers_mut().retain(|h| !drops(h));
        }
        Ok(Step::Continue)
    }
}

/// HeaderFrom$Key / HeaderFrom$Value.
#[derive(Debug)]
struct HeaderFrom {
    side: Side,
    pairs: Vec<(FieldPath, String)>,
    moves: bool,
}

pub(crate) fn build_from(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    let fields = props.paths("fields", true)?;
    let headers = props.req_list("headers")?;
    if fields.len() != headers.len() {
        return Err(PropError::new(
            "headers",
            format!(
                "names {} headers for {} fields; the lists must have the same length",
                headers.len(),
                fields.len()
            ),
        ));
    }
    let moves = match props
        .req_str("operation")?
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "copy" => false,
        "move" => true,
        _ => return Err(PropError::new("operation", "must be copy or move")),
    };
    Ok(Box::new(HeaderFrom {
        side,
        pairs: fields.into_iter().zip(headers).collect(),
        moves,
    }))
}

/// A JSON value as a header value.
pub(crate) fn header_bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone())),
        other => Some(Bytes::from(other.to_string())),
    }
}

impl Transform for HeaderFrom {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        let mut new_headers = Vec::with_capacity(self.pairs.len());
        w.update_object(self.side, "header conversion", |object| {
            for (field, header) in &self.pairs {
                let taken = if self.moves {
                    object.remove_path(field)?
                } else {
                    object.get_path(field)?.cloned()
                };
                // A missing field gives a null header, as in Connect.
                new_headers.push(Header {
                    key: header.clone(),
                    value: taken.as_ref().and_then(header_bytes),
                });
            }
            if self.moves {
                // A move counts as a change even when no field was there.
                object.mark_changed();
            }
            Ok(())
        })?;
        if !new_headers.is_empty() {
            w.headers_mut().extend(new_headers);
        }
        Ok(Step::Continue)
    }
}
