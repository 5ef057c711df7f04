//! Splitting a JSON object into its top-level fields without building their values: each
//! field's value stays a slice of the record's bytes until a transform needs it.
//!
//! Every value is still checked completely, with serde_json's own parser, so the scan
//! accepts exactly what `serde_json::from_slice::<Value>` accepts: numbers out of range,
//! bad escapes, invalid UTF-8 and nesting deeper than serde_json's limit are all refused.
//! A refusal only means "cannot vouch for it": the caller then parses the whole document
//! the ordinary way, which either succeeds or gives serde_json's exact error message.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest container nesting inside a top-level field that a full parse accepts:
/// serde_json allows 127 nested containers and the top-level object is the first.
const MAX_FIELD_DEPTH: usize = 126;

/// Bytes JSON counts as whitespace.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).copied().is_some_and(is_ws) {
        pos += 1;
    }
    pos
}

/// Call `field` with every top-level key (unescaped) and the exact bytes of its value,
/// in document order (duplicate keys included); `field` returns `false` to stop.
/// `false` when `bytes` is not a JSON object, anything in it fails to parse, or `field`
/// stopped the scan; `field` may have been called by then.
pub(crate) fn scan_object<'r>(
    bytes: &'r [u8],
    mut field: impl FnMut(Cow<'r, str>, &'r [u8]) -> bool,
) -> bool {
    let mut pos = skip_ws(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return false;
    }
    pos = skip_ws(bytes, pos + 1);
    if bytes.get(pos) == Some(&b'}') {
        return skip_ws(bytes, pos + 1) == bytes.len();
    }
    loop {
        if bytes.get(pos) != Some(&b'"') {
            return false;
        }
        let rest = &bytes[pos..];
        let (key, len) = match plain_string(rest) {
            Some((key, len)) => (Cow::Borrowed(key), len),
            None => match one::<Key<'r>>(rest) {
                Some((Key(key), len)) => (key, len),
                None => return false,
            },
        };
        pos = skip_ws(bytes, pos + len);
        if bytes.get(pos) != Some(&b':') {
            return false;
        }
        pos = skip_ws(bytes, pos + 1);
        let rest = &bytes[pos..];
        let Some(len) = plain_scalar(rest).or_else(|| one::<Checked>(rest).map(|(_, len)| len))
        else {
            return false;
        };
        if !field(key, &bytes[pos..pos + len]) {
            return false;
        }
        pos = skip_ws(bytes, pos + len);
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(bytes, pos + 1),
            Some(b'}') => return skip_ws(bytes, pos + 1) == bytes.len(),
            _ => return false,
        }
    }
}

/// A string without escapes at the start of `bytes`: its text and its length with the
/// quotes. `None` when there is no such string (escapes, control characters, invalid
/// UTF-8, no closing quote): serde_json decides then.
fn plain_string(bytes: &[u8]) -> Option<(&str, usize)> {
    let len = plain_string_len(bytes)?;
    let text = std::str::from_utf8(bytes.get(1..len - 1)?).ok()?;
    Some((text, len))
}

/// [`plain_string`] without building the text: the length only.
fn plain_string_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let body = &bytes[1..];
    let (end, ascii) = find_special(body)?;
    if body.get(end) != Some(&b'"') {
        return None;
    }
    if !ascii {
        std::str::from_utf8(&body[..end]).ok()?;
    }
    Some(end + 2)
}

/// Index of the first `"`, `\\` or control character, and whether every byte before it
/// is ASCII (then it is valid UTF-8 too).
fn find_special(bytes: &[u8]) -> Option<(usize, bool)> {
    // Whole blocks first, without an early exit inside a block, so that the compiler
    // looks at all of a block's bytes at once (SIMD); then byte by byte.
    const BLOCK: usize = 64;
    let special = |b: u8| (b == b'"') | (b == b'\\') | (b < 0x20);
    let mut offset = 0;
    let mut bits = 0u8;
    for block in bytes.chunks_exact(BLOCK) {
        let (hit, block_bits) = block
            .iter()
            .fold((false, 0u8), |(hit, or), &b| (hit | special(b), or | b));
        if hit {
            break;
        }
        bits |= block_bits;
        offset += BLOCK;
    }
    let tail = bytes.get(offset..)?;
    let i = tail.iter().position(|&b| special(b))?;
    bits |= tail[..i].iter().fold(0, |or, &b| or | b);
    Some((offset + i, bits < 0x80))
}

/// Most digits [`plain_scalar`] takes in a number: far from any range limit.
const MAX_PLAIN_DIGITS: usize = 15;

/// The length of a value at the start of `bytes` that serde_json certainly accepts and
/// that ends where the object's syntax goes on (whitespace, `,` or `}`): a string
/// without escapes, `true`, `false`, `null`, or a short number without exponent. `None`
/// for anything else: serde_json decides then.
fn plain_scalar(bytes: &[u8]) -> Option<usize> {
    let len = match bytes.first()? {
        b'"' => plain_string_len(bytes)?,
        b't' if bytes.starts_with(b"true") => 4,
        b'f' if bytes.starts_with(b"false") => 5,
        b'n' if bytes.starts_with(b"null") => 4,
        b'-' | b'0'..=b'9' => plain_number(bytes)?,
        _ => return None,
    };
    match bytes.get(len) {
        Some(&b) if is_ws(b) || b == b',' || b == b'}' => Some(len),
        _ => None,
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at most [`MAX_PLAIN_DIGITS`] digits.
fn plain_number(bytes: &[u8]) -> Option<usize> {
    let digits = |from: usize| {
        bytes
            .get(from..)
            .map_or(0, |b| b.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let mut pos = usize::from(bytes.first() == Some(&b'-'));
    let int = digits(pos);
    if int == 0 || (int > 1 && bytes.get(pos) == Some(&b'0')) {
        return None;
    }
    pos += int;
    let mut total = int;
    if bytes.get(pos) == Some(&b'.') {
        let frac = digits(pos + 1);
        if frac == 0 {
            return None;
        }
        pos += 1 + frac;
        total += frac;
    }
    (total <= MAX_PLAIN_DIGITS).then_some(pos)
}

/// Parse one JSON value at the start of `bytes` (no leading whitespace); the value and
/// how many bytes it took.
fn one<'r, T: Deserialize<'r>>(bytes: &'r [u8]) -> Option<(T, usize)> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<T>();
    let value = stream.next()?.ok()?;
    Some((value, stream.byte_offset()))
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'r>(Cow<'r, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A value that parsed as a `serde_json::Value` would (nothing is kept).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Check { depth: 0 }
            .deserialize(deserializer)
            .map(|()| Checked)
    }
}

/// Checks one value `depth` containers deep inside a top-level field.
#[derive(Clone, Copy)]
struct Check {
    depth: usize,
}

impl Check {
    fn enter<E: de::Error>(self) -> Result<Check, E> {
        let depth = self.depth + 1;
        if depth > MAX_FIELD_DEPTH {
            return Err(E::custom("nested too deeply"));
        }
        Ok(Check { depth })
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        scan_object(text.as_bytes(), |k, v| {
            out.push((k.into_owned(), String::from_utf8_lossy(v).into_owned()));
            true
        })
        .then_some(out)
    }

    #[test]
    fn splits_fields_exactly() {
        let got = fields(
            " { \"a\" : 1.50 ,\"b\":{\"x\": [1, \"]\"]},\"c\\u0064\":\"\\u00e9\\n\", \"a\":null}\n",
        );
        let want = [
            ("a", "1.50"),
            ("b", "{\"x\": [1, \"]\"]}"),
            ("cd", "\"\\u00e9\\n\""),
            ("a", "null"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, Some(want));
        assert_eq!(fields("{}"), Some(vec![]));
        assert_eq!(fields(" { } "), Some(vec![]));
    }

    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        let deep_ok = format!("{{\"a\":{}0{}}}", "[".repeat(126), "]".repeat(126));
        let deep_bad = format!("{{\"a\":{}0{}}}", "[".repeat(127), "]".repeat(127));
        let cases = [
            "{\"a\":1}",
            "{\"a\":1e400}",
            "{\"a\":-}",
            "{\"a\":01}",
            "{\"a\":1x}",
            "{\"a\":1 2}",
            "{\"a\":\"x\"\"y\"}",
            "{\"a\":tru}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "{\"a\":1",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\ud83d\\ude00\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"tab\there\"}",
            "{\"\\ud800\":1}",
            "{\"a\":[1,]}",
            "{\"a\":{\"b\":1,}}",
            "{\"a\":18446744073709551616}",
            "{\"a\":-9223372036854775809}",
            "[1]",
            "\"x\"",
            "null",
            "",
            &deep_ok,
            &deep_bad,
        ];
        for text in cases {
            let full = serde_json::from_str::<serde_json::Value>(text).is_ok();
            assert_eq!(
                fields(text).is_some(),
                full && text.starts_with('{'),
                "{text}"
            );
        }
        // The fast paths against serde_json on the value alone, in a field and at the
        // end of the object.
        let y = "y".repeat(70);
        let mut scalars: Vec<String> = [
            "0",
            "-0",
            "7",
            "-12",
            "01",
            "-",
            "1.",
            "1.5",
            "-0.25",
            "1e5",
            "1.5E-3",
            "1.2.3",
            "123456789012345",
            "1234567890123456789012",
            "0.1234567890123456789",
            "true",
            "false",
            "null",
            "nul",
            "truex",
            "\"\"",
            "\"abc\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"tab\there\"",
            "\"ünï\"",
            "\"unterminated",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Long strings, so that the special byte falls inside a block of the fast scan.
        for middle in ["", "\\n", "\t", "\u{1f}", "\u{7f}", "ü😀", "\\\"", "\""] {
            scalars.push(format!("\"{y}{middle}{y}\""));
        }
        for v in &scalars {
            for text in [format!("{{\"a\":{v}}}"), format!("{{\"a\":{v} ,\"b\":1}}")] {
                let full = serde_json::from_str::<serde_json::Value>(&text).is_ok();
                assert_eq!(fields(&text).is_some(), full, "{text}");
            }
        }
        for (text, want) in [
            ("\"x\" ", Some(3)),
            ("1.25}", Some(4)),
            ("1e5,", None),
            ("01,", None),
        ] {
            assert_eq!(plain_scalar(text.as_bytes()), want, "{text}");
        }
        let long_bad = [
            &b"{\"a\":\""[..],
            &[b'y'; 70],
            b"\xe2\x82",
            &[b'y'; 70],
            b"\"}",
        ]
        .concat();
        for bad_utf8 in [
            &b"{\"a\":\"\xff\"}"[..],
            b"{\"a\":\"0123456789abc\xc3\"}",
            b"{\"0123456789abc\xc3\":1}",
            &long_bad,
        ] {
            assert!(serde_json::from_slice::<serde_json::Value>(bad_utf8).is_err());
            assert!(!scan_object(bad_utf8, |_, _| true));
        }
        let mut seen = 0;
        assert!(!scan_object(b"{\"a\":1,\"b\":2}", |_, _| {
            seen += 1;
            false
        }));
        assert_eq!(seen, 1, "the scan stops when asked");
    }
}
