//! A subset of Java's `SimpleDateFormat` patterns, as TimestampConverter's `format` uses
//! them, always in UTC (as Connect does). Supported letters: `y M d H h m s SSS E a D u`
//! and the zones `Z` (`+0000`), `X`/`XX`/`XXX` (`Z` when formatting; offsets or `Z` when
//! parsing) and `z` (`UTC`); quoted text (`'T'`, `''`) is literal. Missing date fields
//! parse as 1970-01-01, missing time fields as midnight, like Java.

use chrono::format::{parse, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

/// A compiled date pattern.
#[derive(Debug, Clone)]
pub(crate) struct DateFormat {
    pattern: String,
    format: String,
    parse: String,
    has_date: bool,
    has_time: bool,
    has_iso_zone: bool,
}

impl DateFormat {
    /// Translate a Java pattern; errors name the unsupported part.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let mut format = String::new();
        let mut parse = String::new();
        let (mut has_date, mut has_time, mut has_iso_zone) = (false, false, false);
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // Quoted literal; '' is a single quote.
                if chars.get(i + 1) == Some(&'\'') {
                    push_literal(&mut format, &mut parse, '\'');
                    i += 2;
                    continue;
                }
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unclosed quote in date format '{pattern}'")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            push_literal(&mut format, &mut parse, '\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&l) => {
                            push_literal(&mut format, &mut parse, l);
                            i += 1;
                        }
                    }
                }
                continue;
            }
            if !c.is_ascii_alphabetic() {
                push_literal(&mut format, &mut parse, c);
                i += 1;
                continue;
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            i += n;
            let (f, p): (&str, &str) = match (c, n) {
                ('y', 2) => ("%y", "%y"),
                ('y', _) => ("%Y", "%Y"),
                ('M', 1) => ("%-m", "%m"),
                ('M', 2) => ("%m", "%m"),
                ('M', 3) => ("%b", "%b"),
                ('M', _) => ("%B", "%B"),
                ('d', 1) => ("%-d", "%d"),
                ('d', _) => ("%d", "%d"),
                ('D', _) => ("%j", "%j"),
                ('u', _) => ("%u", "%u"),
                ('E', 1..=3) => ("%a", "%a"),
                ('E', _) => ("%A", "%A"),
                ('H', 1) => ("%-H", "%H"),
                ('H', _) => ("%H", "%H"),
                ('h', 1) => ("%-I", "%I"),
                ('h', _) => ("%I", "%I"),
                ('a', _) => ("%p", "%p"),
                ('m', 1) => ("%-M", "%M"),
                ('m', _) => ("%M", "%M"),
                ('s', 1) => ("%-S", "%S"),
                ('s', _) => ("%S", "%S"),
                ('S', 3) => ("%3f", "%3f"),
                ('S', _) => {
                    return Err("only SSS (milliseconds) is supported for the letter S".to_string())
                }
                ('Z', _) => ("+0000", "%z"),
                ('X', _) => ("Z", "%#z"),
                ('z', _) => ("UTC", "%Z"),
                _ => {
                    return Err(format!(
                        "unsupported letter '{c}' in date format '{pattern}'"
                    ))
                }
            };
            match c {
                'y' | 'M' | 'd' | 'D' => has_date = true,
                'H' | 'h' | 'm' | 's' | 'S' => has_time = true,
                'X' => has_iso_zone = true,
                _ => {}
            }
            format.push_str(f);
            parse.push_str(p);
        }
        let df = DateFormat {
            pattern: pattern.to_string(),
            format,
            parse,
            has_date,
            has_time,
            has_iso_zone,
        };
        // Reject patterns chrono cannot use.
        if StrftimeItems::new(&df.format).parse().is_err() {
            return Err(format!("unsupported date format '{pattern}'"));
        }
        Ok(df)
    }

    /// Format epoch milliseconds in UTC.
    pub(crate) fn format(&self, millis: i64) -> Result<String, String> {
        let dt = DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| "the timestamp is out of range".to_string())?;
        let mut out = String::new();
        use std::fmt::Write;
        write!(out, "{}", dt.format(&self.format))
            .map_err(|_| format!("cannot format with '{}'", self.pattern))?;
        Ok(out)
    }

    /// Parse text into epoch milliseconds. The error does not quote the text.
    pub(crate) fn parse_millis(&self, text: &str) -> Result<i64, String> {
        let fail = || {
            format!(
                "the string does not match the date format '{}'",
                self.pattern
            )
        };
        let owned: String;
        let input = match text.strip_suffix(['Z', 'z']) {
            Some(head) if self.has_iso_zone => {
                owned = format!("{head}+00");
                &owned
            }
            _ => text,
        };
        let mut parsed = Parsed::new();
        parse(&mut parsed, input, StrftimeItems::new(&self.parse)).map_err(|_| fail())?;
        let date = if self.has_date {
            parsed.to_naive_date().map_err(|_| fail())?
        } else {
            NaiveDate::from_ymd_opt(1970, 1, 1).ok_or_else(fail)?
        };
        let time = if self.has_time {
            parsed.to_naive_time().map_err(|_| fail())?
        } else {
            NaiveTime::MIN
        };
        let offset_secs = i64::from(parsed.offset().unwrap_or(0));
        let local = NaiveDateTime::new(date, time).and_utc().timestamp_millis();
        local
            .checked_sub(offset_secs * 1000)
            .ok_or_else(|| "the timestamp is out of range".to_string())
    }
}

fn push_literal(format: &mut String, parse: &mut String, c: char) {
    if c == '%' {
        format.push_str("%%");
        parse.push_str("%%");
    } else {
        format.push(c);
        parse.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_123; // 2023-11-14T22:13:20.123Z

    #[test]
    fn formats_java_patterns_in_utc() {
        let cases = [
            ("yyyy-MM-dd'T'HH:mm:ss.SSSZ", "2023-11-14T22:13:20.123+0000"),
            ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2023-11-14T22:13:20.123Z"),
            ("yyyy-MM-dd", "2023-11-14"),
            ("dd/MM/yy HH:mm", "14/11/23 22:13"),
            ("EEE, d MMM yyyy hh:mm a z", "Tue, 14 Nov 2023 10:13 PM UTC"),
            ("yyyy 'o''clock' D", "2023 o'clock 318"),
            ("HH:mm:ss 100%", "22:13:20 100%"),
        ];
        for (pattern, want) in cases {
            let f = DateFormat::new(pattern).unwrap();
            assert_eq!(f.format(T).unwrap(), want, "{pattern}");
        }
    }

    #[test]
    fn parses_java_patterns() {
        let cases: &[(&str, &str, Result<i64, ()>)] = &[
            (
                "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
                "2023-11-14T22:13:20.123+0000",
                Ok(T),
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
                "2023-11-15T00:13:20.123+0200",
                Ok(T),
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
                "2023-11-14T22:13:20.123Z",
                Ok(T),
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
                "2023-11-14T23:13:20.123+01:00",
                Ok(T),
            ),
            ("yyyy-MM-dd", "2023-11-14", Ok(1_699_920_000_000)),
            ("HH:mm:ss", "01:00:00", Ok(3_600_000)),
            ("yyyy-MM-dd", "14.11.2023", Err(())),
            ("yyyy-MM-dd", "2023-02-30", Err(())),
        ];
        for (pattern, text, want) in cases {
            let f = DateFormat::new(pattern).unwrap();
            let got = f.parse_millis(text);
            match want {
                Ok(w) => assert_eq!(got, Ok(*w), "{pattern} {text}"),
                Err(()) => assert!(got.is_err(), "{pattern} {text}: {got:?}"),
            }
        }
    }

    #[test]
    fn rejects_unsupported_patterns() {
        for p in ["GGG yyyy", "yyyy-MM-dd'T", "HH:mm:ss.S"] {
            assert!(DateFormat::new(p).is_err(), "{p}");
        }
    }
}
