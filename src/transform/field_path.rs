//! Field names and nested field paths inside schemaless JSON objects.
//!
//! Connect's transforms name top-level fields literally (`field.syntax.version=V1`, the
//! default). KIP-821's `V2` syntax, also used by the dead-letter masks, separates nested
//! fields with dots and quotes a name that contains dots with backticks:
//! `` address.`zip.code` ``.

use serde_json::{Map, Value};

/// How field names in a property are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldSyntax {
    /// A name is one top-level field, dots included.
    #[default]
    V1,
    /// Dots separate nested fields; backticks quote a segment.
    V2,
}

/// A path of object keys from the root of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<String>,
    text: String,
}

impl FieldPath {
    /// Parse `text` with the given syntax. Errors say what is wrong with the text.
    pub fn parse(text: &str, syntax: FieldSyntax) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a field name must not be empty".to_string());
        }
        let segments = match syntax {
            FieldSyntax::V1 => vec![text.to_string()],
            FieldSyntax::V2 => split_v2(text)?,
        };
        Ok(FieldPath {
            segments,
            text: text.to_string(),
        })
    }

    /// The path as configured, for messages.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The last segment (the field's own name).
    pub fn leaf(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or("")
    }

    /// The first segment (a top-level field).
    pub(crate) fn head(&self) -> &str {
        self.segments.first().map(String::as_str).unwrap_or("")
    }

    /// The segments after the first (empty for a top-level field).
    pub(crate) fn rest(&self) -> &[String] {
        self.segments.get(1..).unwrap_or_default()
    }

    /// The value at this path, if every step is an object holding the next key.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        get_in(root, &self.segments)
    }

    /// The object that holds the leaf (the path's parent), if it exists.
    pub fn parent_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Map<String, Value>> {
        let (_, parents) = self.segments.split_last()?;
        let mut cur = root;
        for seg in parents {
            cur = cur.as_object_mut()?.get_mut(seg)?;
        }
        cur.as_object_mut()
    }

    /// The value at this path, mutably.
    pub fn get_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Value> {
        let leaf = self.leaf().to_string();
        self.parent_mut(root)?.get_mut(&leaf)
    }

    /// Remove the value at this path, keeping the order of the remaining keys.
    pub fn remove(&self, root: &mut Value) -> Option<Value> {
        let leaf = self.leaf().to_string();
        self.parent_mut(root)?.shift_remove(&leaf)
    }

    /// Visit every object that holds the leaf, walking into each element of arrays met on
    /// the way (`items.card` reaches the `card` of every item). Used by dead-letter masks.
    pub fn for_each_parent(
        &self,
        root: &mut Value,
        f: &mut dyn FnMut(&mut Map<String, Value>, &str),
    ) {
        if let Some((leaf, parents)) = self.segments.split_last() {
            visit(root, parents, leaf, f);
        }
    }
}

/// The value `segments` lead to from `value`, if every step is an object holding the
/// next key.
pub(crate) fn get_in<'v>(value: &'v Value, segments: &[String]) -> Option<&'v Value> {
    segments
        .iter()
        .try_fold(value, |v, seg| v.as_object()?.get(seg))
}

/// [`get_in`], mutably.
pub(crate) fn get_in_mut<'v>(value: &'v mut Value, segments: &[String]) -> Option<&'v mut Value> {
    segments
        .iter()
        .try_fold(value, |v, seg| v.as_object_mut()?.get_mut(seg))
}

fn visit(
    value: &mut Value,
    parents: &[String],
    leaf: &str,
    f: &mut dyn FnMut(&mut Map<String, Value>, &str),
) {
    match value {
        Value::Array(items) => {
            for item in items {
                visit(item, parents, leaf, f);
            }
        }
        Value::Object(map) => match parents.split_first() {
            None => f(map, leaf),
            Some((first, rest)) => {
                if let Some(child) = map.get_mut(first) {
                    visit(child, rest, leaf, f);
                }
            }
        },
        _ => {}
    }
}

fn split_v2(text: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut seg = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '`' && matches!(chars.peek(), None | Some('.')) {
                    closed = true;
                    break;
                }
                seg.push(c);
            }
            if !closed {
                return Err(format!("unclosed backtick in field path '{text}'"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                seg.push(c);
                chars.next();
            }
        }
        if seg.is_empty() {
            return Err(format!("empty field name in path '{text}'"));
        }
        segments.push(seg);
        match chars.next() {
            None => return Ok(segments),
            Some(_) => continue, // the dot
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_syntaxes() {
        type Case<'a> = (&'a str, FieldSyntax, Result<Vec<&'a str>, ()>);
        let cases: &[Case] = &[
            ("a.b", FieldSyntax::V1, Ok(vec!["a.b"])),
            ("a.b", FieldSyntax::V2, Ok(vec!["a", "b"])),
            ("`a.b`.c", FieldSyntax::V2, Ok(vec!["a.b", "c"])),
            ("a.`b.c`", FieldSyntax::V2, Ok(vec!["a", "b.c"])),
            ("ünï.cödé", FieldSyntax::V2, Ok(vec!["ünï", "cödé"])),
            ("a..b", FieldSyntax::V2, Err(())),
            ("`a.b", FieldSyntax::V2, Err(())),
            ("", FieldSyntax::V1, Err(())),
        ];
        for (text, syntax, want) in cases {
            let got = FieldPath::parse(text, *syntax).map(|p| p.segments.clone());
            match want {
                Ok(w) => assert_eq!(
                    got.as_deref().ok(),
                    Some(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]),
                    "{text}"
                ),
                Err(()) => assert!(got.is_err(), "{text} should fail"),
            }
        }
    }

    #[test]
    fn gets_and_removes_nested_fields() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": 3});
        let p = FieldPath::parse("a.b", FieldSyntax::V2).unwrap();
        assert_eq!(p.get(&v), Some(&json!(1)));
        assert_eq!(p.remove(&mut v), Some(json!(1)));
        assert_eq!(v, json!({"a": {"c": 2}, "d": 3}));
        assert_eq!(p.get(&v), None);
        let missing = FieldPath::parse("d.x", FieldSyntax::V2).unwrap();
        assert_eq!(missing.remove(&mut v), None);
    }

    #[test]
    fn visits_through_arrays() {
        let mut v = json!({"items": [{"card": "1"}, {"card": "2"}, 5]});
        let p = FieldPath::parse("items.card", FieldSyntax::V2).unwrap();
        let mut seen = 0;
        p.for_each_parent(&mut v, &mut |map, leaf| {
            if map.contains_key(leaf) {
                seen += 1;
                map.insert(leaf.to_string(), json!("x"));
            }
        });
        assert_eq!(seen, 2);
        assert_eq!(v, json!({"items": [{"card": "x"}, {"card": "x"}, 5]}));
    }
}
