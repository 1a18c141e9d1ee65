//! Record time (SPEC section 1): RFC 3339, UTC, exactly 6 fractional digits, `Z`.

use chrono::{DateTime, NaiveDateTime, Utc};

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Microseconds since the Unix epoch as the record's `time` string.
pub fn format_micros(micros: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_micros(micros).map(|t| t.format(FORMAT).to_string())
}

/// The microseconds a `time` string names, only if it is in exactly the SPEC form.
pub fn parse_micros(s: &str) -> Option<i64> {
    // 2026-11-21T09:30:00.000000Z is 27 bytes; chrono alone would accept variants.
    if s.len() != 27 {
        return None;
    }
    let t = NaiveDateTime::parse_from_str(s.strip_suffix('Z')?, "%Y-%m-%dT%H:%M:%S%.6f").ok()?;
    let micros = t.and_utc().timestamp_micros();
    (format_micros(micros)?.as_str() == s).then_some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_spec_form_only() {
        let s = "2026-11-21T09:30:00.000000Z";
        let m = parse_micros(s).unwrap();
        assert_eq!(format_micros(m).unwrap(), s);
        assert_eq!(format_micros(m + 1).unwrap(), "2026-11-21T09:30:00.000001Z");
        for bad in [
            "2026-11-21T09:30:00Z",
            "2026-11-21T09:30:00.000000+00:00",
            "2026-11-21T09:30:00.0000000Z",
            "2026-11-21 09:30:00.000000Z",
            "2026-02-30T09:30:00.000000Z",
        ] {
            assert_eq!(parse_micros(bad), None, "{bad}");
        }
    }
}
