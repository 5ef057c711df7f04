//! Connect's predicates, which make a transform apply only to some records:
//! TopicNameMatches (`pattern`, a regular expression matching the whole topic name),
//! HasHeaderKey (`name`) and RecordIsTombstone. A transform's `negate=true` inverts it.

use regex::Regex;

use super::props::{PropError, Props};
use super::working::Working;

/// Package of Connect's built-in predicates.
const PREDICATES_PACKAGE: &str = "org.apache.kafka.connect.transforms.predicates.";

/// A compiled predicate.
#[derive(Debug, Clone)]
pub(crate) enum Predicate {
    /// The topic name matches the whole pattern.
    TopicNameMatches(Regex),
    /// The record has at least one header with this key.
    HasHeaderKey(String),
    /// The record value is null.
    RecordIsTombstone,
}

/// Build a predicate from its `type` and properties.
pub(crate) fn build(type_name: &str, props: &Props) -> Result<Predicate, PropError> {
    let short = type_name.trim();
    let short = short.strip_prefix(PREDICATES_PACKAGE).unwrap_or(short);
    let (predicate, allowed): (Predicate, &[&str]) = match short {
        "TopicNameMatches" => {
            let pattern = props.req_str("pattern")?;
            let re = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| PropError::new("pattern", format!("invalid regular expression: {e}")))?;
            (Predicate::TopicNameMatches(re), &["pattern"])
        }
        "HasHeaderKey" => (Predicate::HasHeaderKey(props.req_str("name")?), &["name"]),
        "RecordIsTombstone" => (Predicate::RecordIsTombstone, &[]),
        _ => {
            return Err(PropError::new(
                "type",
                format!(
                    "unknown predicate type '{type_name}' (known: TopicNameMatches, HasHeaderKey, RecordIsTombstone)"
                ),
            ))
        }
    };
    for name in props.names() {
        if name != "type" && !allowed.contains(&name) {
            return Err(PropError::new(
                name,
                format!("unknown property for {short}"),
            ));
        }
    }
    Ok(predicate)
}

impl Predicate {
    /// Whether the record (in its current, partly transformed state) matches.
    pub(crate) fn test(&self, w: &Working<'_>) -> bool {
        match self {
            Predicate::TopicNameMatches(re) => re.is_match(w.topic),
            Predicate::HasHeaderKey(name) => w.headers().iter().any(|h| h.key == *name),
            Predicate::RecordIsTombstone => w.value_is_null(),
        }
    }
}
