//! One JSONL line as the tools that write corpora write it, with errors a person can act on.
//!
//! Strict JSON with two tolerances and one better message, all because of Python, which writes
//! most corpora:
//! - A UTF-8 byte order mark before the first line is skipped (Windows editors and
//!   `encoding="utf-8-sig"` write one); the reader strips it, see [`BOM`].
//! - `json.dumps` writes a float NaN or infinity as the bare words `NaN`, `Infinity` and
//!   `-Infinity`, which JSON does not have. They are read as `null` (a carried field of that
//!   row is null, as pandas would read it), instead of failing the file.
//! - A lone UTF-16 surrogate escape (`"\ud800"`) is not a character. serde_json calls it
//!   "unexpected end of hex escape"; the error here names the escape and its column.

use serde_json::Value;

/// The UTF-8 byte order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses one line; the error says what is wrong in the line's terms (no file or row: the
/// caller adds those).
pub fn parse_line(line: &str) -> Result<Value, String> {
    match serde_json::from_str(line) {
        Ok(v) => Ok(v),
        Err(e) => {
            if let Some(fixed) = non_finite_to_null(line)
                && let Ok(v) = serde_json::from_str(&fixed)
            {
                return Ok(v);
            }
            if let Some((column, escape)) = lone_surrogate(line) {
                return Err(format!(
                    "not JSON: {escape} at column {column} is half of a UTF-16 surrogate pair, \
                     not a character (write the character itself, or the whole pair)"
                ));
            }
            Err(format!("not JSON: {e}"))
        }
    }
}

/// `line` with every bare `NaN`, `Infinity` and `-Infinity` outside strings replaced by
/// `null`; `None` when there is none.
pub fn non_finite_to_null(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut changed = false;
    let mut in_string = false;
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let before = i == 0 || matches!(b[i - 1], b'[' | b',' | b':' | b' ' | b'\t');
        let after = |end: usize| {
            b.get(end)
                .is_none_or(|x| matches!(x, b']' | b'}' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
        };
        let word = ["NaN", "Infinity", "-Infinity"]
            .into_iter()
            .find(|w| before && b[i..].starts_with(w.as_bytes()) && after(i + w.len()));
        if let Some(word) = word {
            out.push_str(&line[copied..i]);
            out.push_str("null");
            i += word.len();
            copied = i;
            changed = true;
            continue;
        }
        i += 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&line[copied..]);
    Some(out)
}

/// The first `\uXXXX` escape inside a string that is an unpaired surrogate: its column
/// (1-based, in characters) and its text.
pub fn lone_surrogate(line: &str) -> Option<(usize, String)> {
    let b = line.as_bytes();
    let hex = |at: usize| -> Option<u32> {
        let h = line.get(at..at + 4)?;
        u32::from_str_radix(h, 16).ok()
    };
    let escape_at = |at: usize| -> Option<u32> {
        (b.get(at) == Some(&b'\\') && b.get(at + 1) == Some(&b'u'))
            .then(|| hex(at + 2))
            .flatten()
    };
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        match (in_string, b[i]) {
            (false, b'"') => in_string = true,
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                if let Some(u) = escape_at(i) {
                    let lone = match u {
                        0xD800..=0xDBFF => !matches!(escape_at(i + 6), Some(0xDC00..=0xDFFF)),
                        0xDC00..=0xDFFF => true,
                        _ => false,
                    };
                    if lone {
                        let column = line[..i].chars().count() + 1;
                        return Some((column, line[i..i + 6].to_string()));
                    }
                    // A valid pair is skipped whole.
                    i += if (0xD800..=0xDBFF).contains(&u) {
                        12
                    } else {
                        6
                    };
                    continue;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_non_finite_numbers_become_null_outside_strings_only() {
        let line = r#"{"a": NaN, "b": [Infinity,-Infinity], "t": "NaN, Infinity", "c":1}"#;
        let v = parse_line(line).unwrap();
        assert_eq!(v["a"], Value::Null);
        assert_eq!(v["b"], serde_json::json!([null, null]));
        assert_eq!(v["t"], "NaN, Infinity");
        assert_eq!(v["c"], 1);
        // Words that merely start like them stay errors.
        assert!(parse_line(r#"{"a": NaNa}"#).is_err());
        assert!(parse_line(r#"{"a": Infinityx}"#).is_err());
        assert_eq!(non_finite_to_null(r#"{"a": 1}"#), None);
    }

    #[test]
    fn a_lone_surrogate_is_named_with_its_column() {
        let e = parse_line(r#"{"text": "ab\ud800"}"#).unwrap_err();
        assert!(e.contains(r"\ud800 at column 13"), "{e}");
        let e = parse_line(r#"{"text": "\udc00x"}"#).unwrap_err();
        assert!(e.contains(r"\udc00 at column 11"), "{e}");
        // A real pair is text, and an escaped backslash before `u` is not an escape.
        assert_eq!(parse_line(r#"{"t": "\ud83d\ude00"}"#).unwrap()["t"], "😀");
        assert_eq!(lone_surrogate(r#"{"t": "\\ud800"}"#), None);
    }
}
