//! Typed access to the properties of one transform or predicate alias, with errors that
//! name the property so they can be turned into the exact configuration key.

use std::collections::BTreeMap;

use super::config::PropValue;
use super::field_path::{FieldPath, FieldSyntax};

/// A problem with one property of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PropError {
    /// Property name without the `transforms.<alias>.` prefix.
    pub prop: String,
    /// What is wrong.
    pub message: String,
}

impl PropError {
    pub(crate) fn new(prop: &str, message: impl Into<String>) -> Self {
        PropError {
            prop: prop.to_string(),
            message: message.into(),
        }
    }
}

/// The properties of one alias (keys without the `transforms.<alias>.` prefix).
#[derive(Debug, Clone, Default)]
pub(crate) struct Props {
    values: BTreeMap<String, PropValue>,
}

impl Props {
    pub(crate) fn new(values: BTreeMap<String, PropValue>) -> Self {
        Props { values }
    }

    /// Property names present.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// An optional string property.
    pub(crate) fn opt_str(&self, name: &str) -> Option<String> {
        self.values.get(name).map(PropValue::as_connect_string)
    }

    /// A required, non-empty string property.
    pub(crate) fn req_str(&self, name: &str) -> Result<String, PropError> {
        match self.opt_str(name) {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(PropError::new(name, "must not be empty")),
            None => Err(PropError::new(name, "missing required property")),
        }
    }

    /// An optional list property (comma-separated string or YAML list).
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.values
            .get(name)
            .map(PropValue::as_list)
            .unwrap_or_default()
    }

    /// A required list property with at least one element.
    pub(crate) fn req_list(&self, name: &str) -> Result<Vec<String>, PropError> {
        if !self.values.contains_key(name) {
            return Err(PropError::new(name, "missing required property"));
        }
        let list = self.list(name);
        if list.is_empty() {
            return Err(PropError::new(name, "must name at least one element"));
        }
        Ok(list)
    }

    /// A boolean property (`true`/`false`, case-insensitive).
    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool, PropError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(PropValue::Bool(b)) => Ok(*b),
            Some(v) => match v.as_connect_string().trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(PropError::new(name, "must be true or false")),
            },
        }
    }

    /// The `field.syntax.version` of KIP-821 (`V1`: names are literal, the default; `V2`:
    /// dots separate nested fields, backticks quote names containing dots).
    pub(crate) fn field_syntax(&self) -> Result<FieldSyntax, PropError> {
        match self.opt_str("field.syntax.version") {
            None => Ok(FieldSyntax::V1),
            Some(v) => match v.trim().to_ascii_uppercase().as_str() {
                "V1" => Ok(FieldSyntax::V1),
                "V2" => Ok(FieldSyntax::V2),
                _ => Err(PropError::new("field.syntax.version", "must be V1 or V2")),
            },
        }
    }

    /// A required field path, parsed with the alias's field syntax.
    pub(crate) fn req_path(&self, name: &str) -> Result<FieldPath, PropError> {
        let syntax = self.field_syntax()?;
        let text = self.req_str(name)?;
        FieldPath::parse(&text, syntax).map_err(|m| PropError::new(name, m))
    }

    /// A list of field paths, parsed with the alias's field syntax.
    pub(crate) fn paths(&self, name: &str, required: bool) -> Result<Vec<FieldPath>, PropError> {
        let syntax = self.field_syntax()?;
        let list = if required {
            self.req_list(name)?
        } else {
            self.list(name)
        };
        list.iter()
            .map(|t| FieldPath::parse(t, syntax).map_err(|m| PropError::new(name, m)))
            .collect()
    }
}
