//! RFC 8785 (JSON Canonicalization Scheme) for the JSON the ledger accepts: objects,
//! arrays, strings, booleans, null and integers in `0 ..= 2^53 - 1` (SPEC section 1).
//! Floats and other numbers are refused rather than canonicalized, so the ES6 number
//! formatting of RFC 8785 section 3.2.2.3 is never needed.

use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

use super::MAX_SAFE_INTEGER;

/// How deep a value may nest; serde_json's parser stops at 128 too.
pub const MAX_DEPTH: usize = 128;

/// Why a value has no canonical form under this contract. `path` is a JSON Pointer
/// (RFC 6901) to the offending member, so an error can name the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError {
    pub path: String,
    pub reason: &'static str,
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.reason)
    }
}

impl std::error::Error for CanonicalError {}

/// The RFC 8785 bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, &mut String::new(), 0)?;
    Ok(out)
}

/// Appends the RFC 8785 bytes of `value` to `out`.
pub fn write(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    write_value(out, value, &mut String::new(), 0)
}

fn write_value(
    out: &mut Vec<u8>,
    value: &Value,
    path: &mut String,
    depth: usize,
) -> Result<(), CanonicalError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalError {
            path: path.clone(),
            reason: "nested deeper than 128 levels",
        });
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match n.as_u64() {
            Some(i) if i <= MAX_SAFE_INTEGER => write_u64(out, i),
            Some(_) => return Err(error(path, "integer above 2^53 - 1")),
            None if n.is_i64() => return Err(error(path, "negative number")),
            None => {
                return Err(error(
                    path,
                    "number is not an integer (floats are not allowed)",
                ))
            }
        },
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push('/');
                path.push_str(itoa(i as u64).as_str());
                write_value(out, item, path, depth + 1)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                let len = path.len();
                path.push('/');
                push_pointer_token(path, key);
                write_value(out, item, path, depth + 1)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn error(path: &str, reason: &'static str) -> CanonicalError {
    CanonicalError {
        path: path.to_owned(),
        reason,
    }
}

fn push_pointer_token(path: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// RFC 8785 section 3.2.3: member names sort by their UTF-16 code units. For names
/// made of characters below U+D800 (all ASCII, most text) that equals byte order, which
/// is checked first because it is much cheaper.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    if a.bytes().chain(b.bytes()).all(|c| c < 0xED) {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// RFC 8785 section 3.2.2.2 string escaping (ECMAScript `JSON.stringify`).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Decimal digits of a non-negative integer, as RFC 8785 writes integers.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa(n).as_str().as_bytes());
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        // Only ASCII digits are ever written into `buf`.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

fn itoa(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_members_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b" : [1, 2, {"z":null,"a":true}], "a": "x" }"#).unwrap();
        assert_eq!(canon(v), r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#);
    }

    /// RFC 8785 section 3.2.3's sorting example, less its float-valued members:
    /// the names sort by UTF-16 code units, so U+1F600 (a surrogate pair, 0xD83D…) sorts
    /// before U+FB33 even though its UTF-8 bytes sort after.
    #[test]
    fn rfc8785_utf16_member_order() {
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{0080}": "Control",
            "\u{00f6}": "Latin Small Letter O With Diaeresis"
        });
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{0080}\":\"Control\",\"\u{00f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(v), expected);
    }

    /// RFC 8785 section 3.2.2.2: only `"`, `\` and controls are escaped, with the short
    /// forms where JSON has them and lowercase `\u00xx` otherwise; DEL and non-ASCII stay.
    #[test]
    fn rfc8785_string_escapes() {
        let v = json!("\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\"\\/\u{7f}\u{2028}é");
        assert_eq!(
            canon(v),
            "\"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\\\"\\\\/\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn integers_in_range_only() {
        assert_eq!(canon(json!(0)), "0");
        assert_eq!(canon(json!(MAX_SAFE_INTEGER)), "9007199254740991");
        let err = to_vec(&json!({"a": [1, MAX_SAFE_INTEGER + 1]})).unwrap_err();
        assert_eq!(err.path, "/a/1");
        assert_eq!(err.reason, "integer above 2^53 - 1");
        let err = to_vec(&json!({"x/y": {"f": 1.5}})).unwrap_err();
        assert_eq!(err.path, "/x~1y/f");
        assert!(err.reason.contains("floats"));
        let err = to_vec(&json!({"n": -1})).unwrap_err();
        assert_eq!(err.reason, "negative number");
        // 1.0 is a float in JSON's data model here: serde_json parses it as f64.
        let v: Value = serde_json::from_str("{\"n\":1.0}").unwrap();
        assert!(to_vec(&v).is_err());
    }

    #[test]
    fn refuses_excessive_depth() {
        let mut v = json!(1);
        for _ in 0..=MAX_DEPTH {
            v = json!([v]);
        }
        assert_eq!(
            to_vec(&v).unwrap_err().reason,
            "nested deeper than 128 levels"
        );
    }

    proptest::proptest! {
        /// Canonical bytes are a fixed point: parsing and canonicalizing them again gives
        /// the same bytes, whatever the input's member order or strings.
        #[test]
        fn canonical_is_a_fixed_point(
            entries in proptest::collection::btree_map("\\PC{0,8}", proptest::prelude::any::<(u32, String, bool)>(), 0..8)
        ) {
            let obj: serde_json::Map<String, Value> = entries
                .into_iter()
                .map(|(k, (n, s, b))| (k, json!([n, s, b, null])))
                .collect();
            let first = to_vec(&Value::Object(obj)).unwrap();
            let reparsed: Value = serde_json::from_slice(&first).unwrap();
            proptest::prop_assert_eq!(to_vec(&reparsed).unwrap(), first);
        }
    }
}
