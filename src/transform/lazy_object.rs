//! A record key or value that is a JSON object, held as its top-level fields in document
//! order, each field parsed only when a transform reads or writes it.
//!
//! Untouched fields are written back byte for byte (no re-escaping, numbers and
//! whitespace inside them as they came); keys, commas and colons are written compactly,
//! as `serde_json` would. Duplicate keys behave as in a parsed `serde_json::Map`: the
//! last value wins, at the position of the first.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::errors::DataError;
use super::field_path::{get_in, get_in_mut, FieldPath};
use super::lazy_scan::scan_object;

/// One top-level field.
#[derive(Debug)]
enum Field<'r> {
    /// Not parsed; the bytes of the value in the record.
    Raw(&'r [u8]),
    /// Parsed and unchanged: written back as the original bytes.
    Parsed(&'r [u8], Value),
    /// New or changed: written with `serde_json`.
    Owned(Value),
}

impl Field<'_> {
    fn parse(raw: &[u8]) -> Result<Value, DataError> {
        serde_json::from_slice(raw)
            .map_err(|e| DataError::new(format!("a field is not valid JSON: {e}")))
    }

    /// The value, parsed on first use.
    fn value_mut(&mut self) -> Result<&mut Value, DataError> {
        if let Field::Raw(raw) = *self {
            *self = Field::Parsed(raw, Self::parse(raw)?);
        }
        match self {
            Field::Parsed(_, v) | Field::Owned(v) => Ok(v),
            // Replaced just above.
            Field::Raw(_) => Err(DataError::new("a field could not be parsed")),
        }
    }

    /// Mark the (parsed) value as changed.
    fn own(&mut self) {
        if let Field::Parsed(_, v) = self {
            *self = Field::Owned(std::mem::take(v));
        }
    }

    fn into_value(self) -> Result<Value, DataError> {
        match self {
            Field::Raw(raw) => Self::parse(raw),
            Field::Parsed(_, v) | Field::Owned(v) => Ok(v),
        }
    }

    fn to_value(&self) -> Result<Value, DataError> {
        match self {
            Field::Raw(raw) => Self::parse(raw),
            Field::Parsed(_, v) | Field::Owned(v) => Ok(v.clone()),
        }
    }
}

/// One top-level field with its name.
#[derive(Debug)]
struct Entry<'r> {
    /// [`key_hash`] of the name, to skip most comparisons.
    hash: u32,
    /// The name, borrowed from the record when it has no escapes.
    key: Cow<'r, str>,
    /// The value.
    field: Field<'r>,
}

impl Entry<'_> {
    fn is(&self, hash: u32, name: &str) -> bool {
        self.hash == hash && self.key == name
    }
}

/// Most top-level fields an object may have to be parsed lazily; finding duplicate keys
/// costs a comparison per pair of fields, so larger objects are parsed whole.
const MAX_LAZY_FIELDS: usize = 64;

/// A cheap fingerprint of a field name (length, first, middle and last byte). Only a
/// filter before comparing names, so its quality matters for speed, never for results.
fn key_hash(name: &str) -> u32 {
    let b = name.as_bytes();
    let at = |i: usize| u32::from(b.get(i).copied().unwrap_or(0));
    // Lengths past 255 share their low byte with shorter names; fine for a filter.
    (b.len() as u32 & 0xff) | at(0) << 8 | at(b.len() / 2) << 16 | at(b.len().wrapping_sub(1)) << 24
}

/// A JSON object whose fields are parsed on demand. Names are unique; lookups are linear
/// (objects are small, and each transform looks up only the fields it is configured
/// with).
#[derive(Debug)]
pub(crate) struct LazyObject<'r> {
    entries: Vec<Entry<'r>>,
    dirty: bool,
}

impl<'r> LazyObject<'r> {
    /// Split `bytes` into fields; `None` when they are not a JSON object, are not valid
    /// JSON, or have too many fields (parse them whole then, for the value or the exact
    /// error).
    pub(crate) fn parse(bytes: &'r [u8]) -> Option<Self> {
        let mut entries: Vec<Entry<'r>> = Vec::with_capacity(8);
        scan_object(bytes, |key, raw| {
            let hash = key_hash(&key);
            // A repeated key keeps its place and takes the later value, as in a `Map`.
            if let Some(e) = entries.iter_mut().find(|e| e.is(hash, &key)) {
                e.field = Field::Raw(raw);
            } else if entries.len() < MAX_LAZY_FIELDS {
                entries.push(Entry {
                    hash,
                    key,
                    field: Field::Raw(raw),
                });
            } else {
                return false;
            }
            true
        })
        .then_some(LazyObject {
            entries,
            dirty: false,
        })
    }

    fn position(&self, name: &str) -> Option<usize> {
        let hash = key_hash(name);
        self.entries.iter().position(|e| e.is(hash, name))
    }

    fn field_mut(&mut self, name: &str) -> Option<&mut Field<'r>> {
        let i = self.position(name)?;
        self.entries.get_mut(i).map(|e| &mut e.field)
    }

    /// An object from a parsed map; `dirty` says whether it differs from the record.
    pub(crate) fn from_map(map: Map<String, Value>, dirty: bool) -> Self {
        LazyObject {
            entries: map
                .into_iter()
                .map(|(k, v)| Entry {
                    hash: key_hash(&k),
                    key: Cow::Owned(k),
                    field: Field::Owned(v),
                })
                .collect(),
            dirty,
        }
    }

    /// Whether anything changed since the record's bytes.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Record a change that the other methods do not see (the object must be re-encoded).
    pub(crate) fn mark_changed(&mut self) {
        self.dirty = true;
    }

    /// The top-level keys in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_ref())
    }

    /// The value of a top-level field.
    pub(crate) fn get(&mut self, name: &str) -> Result<Option<&Value>, DataError> {
        match self.field_mut(name) {
            None => Ok(None),
            Some(field) => field.value_mut().map(|v| Some(&*v)),
        }
    }

    /// The value at a path (its first segment is a top-level field).
    pub(crate) fn get_path(&mut self, path: &FieldPath) -> Result<Option<&Value>, DataError> {
        Ok(self.get(path.head())?.and_then(|v| get_in(v, path.rest())))
    }

    /// Run `f` on the value at a path, if there is one; `f` returns whether it changed
    /// the value (it must leave it equal otherwise).
    pub(crate) fn update_path(
        &mut self,
        path: &FieldPath,
        f: impl FnOnce(&mut Value) -> Result<bool, DataError>,
    ) -> Result<(), DataError> {
        let Some(field) = self.field_mut(path.head()) else {
            return Ok(());
        };
        let Some(slot) = get_in_mut(field.value_mut()?, path.rest()) else {
            return Ok(());
        };
        if f(slot)? {
            field.own();
            self.dirty = true;
        }
        Ok(())
    }

    /// Remove the value at a path, keeping the order of the remaining keys.
    pub(crate) fn remove_path(&mut self, path: &FieldPath) -> Result<Option<Value>, DataError> {
        let removed = match path.rest().split_last() {
            None => match self.position(path.head()) {
                Some(i) => Some(self.entries.remove(i).field.into_value()?),
                None => None,
            },
            Some((leaf, parents)) => {
                let Some(field) = self.field_mut(path.head()) else {
                    return Ok(None);
                };
                let removed = get_in_mut(field.value_mut()?, parents)
                    .and_then(Value::as_object_mut)
                    .and_then(|parent| parent.shift_remove(leaf));
                if removed.is_some() {
                    field.own();
                }
                removed
            }
        };
        if removed.is_some() {
            self.dirty = true;
        }
        Ok(removed)
    }

    /// Set a top-level field: in place when it exists, else at the end.
    pub(crate) fn insert(&mut self, name: &str, value: Value) {
        match self.field_mut(name) {
            Some(field) => *field = Field::Owned(value),
            None => self.entries.push(Entry {
                hash: key_hash(name),
                key: Cow::Owned(name.to_string()),
                field: Field::Owned(value),
            }),
        }
        self.dirty = true;
    }

    /// Rebuild the object field by field: `rename` says `None` to drop a field,
    /// `Some(None)` to keep it, `Some(Some(new))` to keep it under a new name. A name that
    /// is taken more than once keeps the position of its first field and the value of its
    /// last (as inserting into a `Map` one by one would).
    pub(crate) fn retain_renamed<'n>(&mut self, rename: impl Fn(&str) -> Option<Option<&'n str>>) {
        // Compacted in place: `kept` fields are done, the others not looked at yet.
        let mut kept = 0;
        // Where renamed fields went. Names were unique, so a field that keeps its name
        // can only meet a renamed one.
        let mut renamed: Vec<usize> = Vec::new();
        for i in 0..self.entries.len() {
            let entry = &mut self.entries[i];
            let taken = match rename(&entry.key) {
                None => continue,
                Some(Some(new)) if new != entry.key.as_ref() => {
                    entry.hash = key_hash(new);
                    entry.key = Cow::Owned(new.to_string());
                    let (hash, key) = (entry.hash, &self.entries[i].key);
                    let taken = self.entries[..kept].iter().position(|e| e.is(hash, key));
                    if taken.is_none() {
                        renamed.push(kept);
                    }
                    taken
                }
                Some(_) => {
                    let (hash, key) = (entry.hash, &self.entries[i].key);
                    renamed
                        .iter()
                        .copied()
                        .find(|&j| self.entries[j].is(hash, key))
                }
            };
            match taken {
                Some(j) => {
                    let field = std::mem::replace(&mut self.entries[i].field, Field::Raw(&[]));
                    self.entries[j].field = field;
                }
                None => {
                    self.entries.swap(kept, i);
                    kept += 1;
                }
            }
        }
        self.entries.truncate(kept);
        self.dirty = true;
    }

    /// The whole object as a `serde_json` value, leaving this one as it is.
    pub(crate) fn to_value(&self) -> Result<Value, DataError> {
        let mut map = Map::with_capacity(self.entries.len());
        for e in &self.entries {
            map.insert(e.key.to_string(), e.field.to_value()?);
        }
        Ok(Value::Object(map))
    }

    /// The whole object as a `serde_json` value.
    pub(crate) fn into_value(self) -> Result<Value, DataError> {
        let mut map = Map::with_capacity(self.entries.len());
        for e in self.entries {
            map.insert(e.key.into_owned(), e.field.into_value()?);
        }
        Ok(Value::Object(map))
    }

    /// Append the object's JSON to `out`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> Result<(), DataError> {
        let fail = |e: serde_json::Error| DataError::new(format!("could not encode JSON: {e}"));
        out.push(b'{');
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match &entry.key {
                // Unescaped in the record, so nothing in it needs escaping: serde_json
                // escapes only quotes, backslashes and control characters, which a valid
                // JSON string has only as escapes.
                Cow::Borrowed(key) => {
                    out.push(b'"');
                    out.extend_from_slice(key.as_bytes());
                    out.push(b'"');
                }
                Cow::Owned(key) => serde_json::to_writer(&mut *out, key).map_err(fail)?,
            }
            out.push(b':');
            match &entry.field {
                Field::Raw(raw) | Field::Parsed(raw, _) => out.extend_from_slice(raw),
                Field::Owned(v) => serde_json::to_writer(&mut *out, v).map_err(fail)?,
            }
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split, then parse every field: the same value as a full parse, or a refusal
    /// exactly when the full parse refuses (or finds no object).
    fn agrees_with_serde(bytes: &[u8]) {
        let full = serde_json::from_slice::<Value>(bytes).ok();
        match LazyObject::parse(bytes) {
            Some(lazy) => {
                let lazy = lazy.into_value().ok();
                assert!(
                    full.is_some(),
                    "accepted {:?}",
                    String::from_utf8_lossy(bytes)
                );
                assert_eq!(lazy, full, "{:?}", String::from_utf8_lossy(bytes));
            }
            None => assert!(
                !full.as_ref().is_some_and(Value::is_object),
                "refused {:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn random_mutations_agree_with_a_full_parse() {
        let seeds: [&[u8]; 4] = [
            br#"{"id":12,"email":"a@b.c","amount":-0.5,"ok":true,"n":null,"tags":["x",{"y":[]}]}"#,
            br#" { "k\u00e9y" : "tab\t \"q\" \ud83d\ude00" , "k" : 1e3 , "k" : [ ] } "#,
            "{\"ü\":\"ünï😀\",\"big\":123456789012345678901234567890,\"f\":1.5E-7}".as_bytes(),
            br#"{"a":{"b":{"c":[1,2,{"d":"0123456789abcdef0123456789"}]}},"e":"0123456789abcdef"}"#,
        ];
        // Bytes that matter to the syntax, plus some that must be refused.
        const ALPHABET: &[u8] = b"{}[]\":,\\ 0123456789.eE-+tfnulx\t\n\x01\x7f\xc3\xa9\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            agrees_with_serde(seed);
            for _ in 0..3000 {
                let mut doc = seed.to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = (next() % (doc.len() as u64 + 1)) as usize;
                    let byte = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
                    match next() % 3 {
                        0 if at < doc.len() => doc[at] = byte,
                        1 if at < doc.len() => {
                            doc.remove(at);
                        }
                        _ => doc.insert(at, byte),
                    }
                }
                agrees_with_serde(&doc);
            }
        }
    }

    #[test]
    fn renames_keep_first_places_and_last_values() {
        let text = br#"{"a":1,"b":2,"c":3,"d":4}"#;
        let mut object = LazyObject::parse(text).expect("an object");
        // a->c, b dropped, d->a: c takes a's place, then c's own value; a goes last.
        object.retain_renamed(|k| match k {
            "a" => Some(Some("c")),
            "b" => None,
            "d" => Some(Some("a")),
            _ => Some(None),
        });
        let mut out = Vec::new();
        object.write(&mut out).expect("writes");
        assert_eq!(String::from_utf8_lossy(&out), r#"{"c":3,"a":4}"#);
    }
}
