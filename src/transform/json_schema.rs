//! JSON Schema validation of record keys and values, with failures turned into sentences
//! a person reads in a dead-letter header: `required property couponId is missing`,
//! `at /amount: a string is not of type number`. Values are quoted only when the pipeline
//! allows payloads in messages (`errors.log.include.messages=true`).

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::working::type_phrase;

/// At most this many problems are listed in one message.
const MAX_LISTED: usize = 3;

/// Compile a schema. The draft comes from `$schema` (2020-12 when absent); only local
/// `$ref`s resolve (no file or network retrieval).
pub(crate) fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .build(schema)
        .map_err(|e| format!("invalid JSON Schema: {e}"))
}

/// Validate `instance`; `None` when valid, else a message listing the first problems.
pub(crate) fn violations(
    validator: &Validator,
    instance: &Value,
    show_values: bool,
) -> Option<String> {
    let mut messages = Vec::new();
    let mut total = 0usize;
    for error in validator.iter_errors(instance) {
        total += 1;
        if messages.len() < MAX_LISTED {
            messages.push(describe(&error, show_values));
        }
    }
    if total == 0 {
        return None;
    }
    let mut text = messages.join("; ");
    if total > messages.len() {
        text.push_str(&format!(" (and {} more)", total - messages.len()));
    }
    Some(text)
}

/// One validation error as a sentence.
fn describe(error: &ValidationError<'_>, show_values: bool) -> String {
    let path = error.instance_path().as_str().to_string();
    let at = |s: String| {
        if path.is_empty() {
            s
        } else {
            format!("at {path}: {s}")
        }
    };
    let shown = || {
        if show_values {
            error.instance().to_string()
        } else {
            type_phrase(error.instance()).to_string()
        }
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            at(format!("required property {name} is missing"))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            at(format!("{} is not of type {expected}", shown()))
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => at(format!(
            "additional properties are not allowed: {}",
            unexpected.join(", ")
        )),
        ValidationErrorKind::Enum { .. } => {
            at(format!("{} is not one of the allowed values", shown()))
        }
        ValidationErrorKind::Constant { .. } => {
            at(format!("{} is not the expected constant", shown()))
        }
        _ if show_values => at(error.to_string()),
        _ => at(error.masked_with(type_phrase(error.instance())).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Validator {
        compile(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "required": ["couponId", "amount"],
            "properties": {
                "couponId": {"type": "string"},
                "amount": {"type": "number", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn describes_problems_in_words() {
        let v = schema();
        let cases: &[(Value, bool, Option<&str>)] = &[
            (json!({"couponId": "A", "amount": 3}), false, None),
            (
                json!({"amount": 3}),
                false,
                Some("required property couponId is missing"),
            ),
            (
                json!({"couponId": "A", "amount": "x"}),
                false,
                Some("at /amount: a string is not of type number"),
            ),
            (
                json!({"couponId": "A", "amount": "x"}),
                true,
                Some("at /amount: \"x\" is not of type number"),
            ),
            (
                json!({"couponId": "A", "amount": -1}),
                false,
                Some("at /amount: an integer is less than the minimum of 0"),
            ),
            (
                json!({"couponId": "A", "amount": 1, "tags": ["ok", 5]}),
                false,
                Some("at /tags/1: an integer is not of type string"),
            ),
            (
                json!({"couponId": "A", "amount": 1, "zip": 1}),
                false,
                Some("additional properties are not allowed: zip"),
            ),
            (
                json!("ünïcode"),
                false,
                Some("a string is not of type object"),
            ),
        ];
        for (instance, show, want) in cases {
            assert_eq!(
                violations(&v, instance, *show).as_deref(),
                *want,
                "{instance}"
            );
        }
    }

    #[test]
    fn hides_values_unless_allowed() {
        let v = compile(&json!({"type": "string", "maxLength": 3})).unwrap();
        let msg = violations(&v, &json!("secret-value"), false).unwrap();
        assert!(!msg.contains("secret"), "{msg}");
        let shown = violations(&v, &json!("secret-value"), true).unwrap();
        assert!(shown.contains("secret"), "{shown}");
    }

    #[test]
    fn counts_extra_problems() {
        let v = compile(&json!({"required": ["a", "b", "c", "d", "e"]})).unwrap();
        let msg = violations(&v, &json!({}), false).unwrap();
        assert!(msg.ends_with("(and 2 more)"), "{msg}");
    }

    #[test]
    fn rejects_invalid_schemas() {
        assert!(compile(&json!({"type": 12})).is_err());
    }
}
