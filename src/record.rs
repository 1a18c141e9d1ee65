//! The ledger record (SPEC section 1) and the newtypes its members parse into.
//!
//! A [`Record`] can only be made by [`Record::new`], which computes its canonical bytes
//! and hash once; no caller can hand in either. Payloads are canonicalized when they are
//! parsed, at the edge, so the serialized write path only concatenates and hashes.

use serde_json::Value;
use std::fmt;

use crate::spec::canonical::{self, write_str, write_u64};
use crate::spec::hash::{record_hash, Hash32};
use crate::spec::MAX_SAFE_INTEGER;

/// Why an input is not a valid record member. `field` names the member (a JSON Pointer
/// below `data` for payload errors), `reason` says what is wrong; neither echoes the value,
/// so no identity number can leak through an error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `<kind>:<id>`: kind is lower-case ASCII (`[a-z][a-z0-9_-]*`, at most 32), id is 1 to
/// 200 characters of `[A-Za-z0-9._~:@+-]`. Used for `stream` and `actor`.
fn parse_qualified(field: &str, s: &str) -> Result<(), FieldError> {
    let Some((kind, id)) = s.split_once(':') else {
        return Err(FieldError::new(field, "must be <kind>:<id>"));
    };
    let kind_ok = kind.len() <= 32
        && kind.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !kind_ok {
        return Err(FieldError::new(
            field,
            "kind must start with a-z and hold only a-z, 0-9, '_' or '-' (at most 32)",
        ));
    }
    let id_ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:@+-".contains(&b));
    if !id_ok {
        return Err(FieldError::new(
            field,
            "id must be 1 to 200 characters of A-Z, a-z, 0-9 and ._~:@+-",
        ));
    }
    Ok(())
}

macro_rules! qualified_name {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, FieldError> {
                let s = s.into();
                parse_qualified($field, &s)?;
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

qualified_name!(
    /// The aggregate a record belongs to, e.g. `session:0f8a…` or `client:sp-acme`.
    StreamId,
    "stream"
);
qualified_name!(
    /// The authenticated principal that caused an append, e.g. `broker:neb-prod-1`.
    Actor,
    "actor"
);

/// Event type, dotted lower case with at least two segments (`login.completed`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct EventType(String);

impl EventType {
    pub fn parse(s: impl Into<String>) -> Result<Self, FieldError> {
        let s = s.into();
        let segment_ok = |seg: &str| {
            seg.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if s.len() > 100 || s.split('.').count() < 2 || !s.split('.').all(segment_ok) {
            return Err(FieldError::new(
                "type",
                "must be dotted lower case, at least two segments of [a-z][a-z0-9_]* (at most 100)",
            ));
        }
        Ok(EventType(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Schema version of `data` for its type: 1 or more.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SchemaVersion(u32);

impl SchemaVersion {
    pub fn parse(v: u64) -> Result<Self, FieldError> {
        match u32::try_from(v) {
            Ok(v) if v >= 1 => Ok(SchemaVersion(v)),
            _ => Err(FieldError::new(
                "version",
                "must be an integer from 1 to 2^32 - 1",
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A record's `data`: a JSON object with canonical bytes no longer than
/// [`Payload::MAX_BYTES`] and only integers in `0 ..= 2^53 - 1`. Holds its RFC 8785
/// bytes, computed once here.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    canonical: Box<[u8]>,
}

impl Payload {
    /// 64 KiB: a login or signing event is a few hundred bytes; a transaction text with
    /// HTML evidence can be several KiB.
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn parse(value: &Value) -> Result<Self, FieldError> {
        if !value.is_object() {
            return Err(FieldError::new("data", "must be a JSON object"));
        }
        let canonical = canonical::to_vec(value)
            .map_err(|e| FieldError::new(format!("data{}", e.path), e.reason))?;
        if canonical.len() > Self::MAX_BYTES {
            return Err(FieldError::new(
                "data",
                "larger than 64 KiB in canonical form",
            ));
        }
        Ok(Payload {
            canonical: canonical.into_boxed_slice(),
        })
    }

    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }
}

impl fmt::Debug for Payload {
    /// Payload bytes are not printed: they may hold `_ref` values and evidence text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.canonical.len())
    }
}

/// A position that must be an integer in `0 ..= 2^53 - 1`.
fn check_integer(field: &str, n: u64) -> Result<u64, FieldError> {
    if n > MAX_SAFE_INTEGER {
        return Err(FieldError::new(field, "integer above 2^53 - 1"));
    }
    Ok(n)
}

/// A record's `time`: microseconds since the epoch and their SPEC text (RFC 3339, UTC,
/// 6 fractional digits), formatted once for a whole commit group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordTime {
    micros: i64,
    text: String,
}

impl RecordTime {
    pub fn from_micros(micros: i64) -> Result<RecordTime, FieldError> {
        let text = crate::spec::time::format_micros(micros)
            .ok_or_else(|| FieldError::new("time", "out of range"))?;
        Ok(RecordTime { micros, text })
    }

    pub fn micros(&self) -> i64 {
        self.micros
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The members of a record other than those the ledger assigns (`seq`, `prev`, `time`).
#[derive(Clone, Debug)]
pub struct Event {
    pub stream: StreamId,
    pub event_type: EventType,
    pub version: SchemaVersion,
    pub actor: Actor,
    pub data: Payload,
}

/// One ledger record with its canonical bytes and record hash.
#[derive(Clone)]
pub struct Record {
    seq: u64,
    stream: StreamId,
    stream_seq: u64,
    event_type: EventType,
    time_micros: i64,
    canonical: Vec<u8>,
    hash: Hash32,
}

impl Record {
    /// Builds the record's RFC 8785 bytes directly (its member names are fixed, so their
    /// order is too) and hashes them. `seq` and `stream_seq` must be at most 2^53 - 1;
    /// the ledger guarantees that by counting from 0 and 1.
    pub fn new(
        seq: u64,
        prev: &Hash32,
        time: &RecordTime,
        stream_seq: u64,
        event: &Event,
    ) -> Result<Record, FieldError> {
        check_integer("seq", seq)?;
        check_integer("stream_seq", stream_seq)?;
        let data = event.data.canonical();
        let mut out = Vec::with_capacity(data.len() + 256);
        // Members in RFC 8785 order: actor, data, prev, seq, stream, stream_seq, time, type, version.
        out.extend_from_slice(b"{\"actor\":");
        write_str(&mut out, event.actor.as_str());
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data);
        out.extend_from_slice(b",\"prev\":\"");
        prev.write_hex(&mut out);
        out.extend_from_slice(b"\",\"seq\":");
        write_u64(&mut out, seq);
        out.extend_from_slice(b",\"stream\":");
        write_str(&mut out, event.stream.as_str());
        out.extend_from_slice(b",\"stream_seq\":");
        write_u64(&mut out, stream_seq);
        out.extend_from_slice(b",\"time\":");
        write_str(&mut out, time.as_str());
        out.extend_from_slice(b",\"type\":");
        write_str(&mut out, event.event_type.as_str());
        out.extend_from_slice(b",\"version\":");
        write_u64(&mut out, u64::from(event.version.get()));
        out.push(b'}');
        let hash = record_hash(&out);
        Ok(Record {
            seq,
            stream: event.stream.clone(),
            stream_seq,
            event_type: event.event_type.clone(),
            time_micros: time.micros(),
            canonical: out,
            hash,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    pub fn stream_seq(&self) -> u64 {
        self.stream_seq
    }

    pub fn time_micros(&self) -> i64 {
        self.time_micros
    }

    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    pub fn hash_bytes(&self) -> &[u8] {
        &self.hash.0
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Record(seq {}, {})", self.seq, self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn event(stream: &str, data: Value) -> Event {
        Event {
            stream: StreamId::parse(stream).unwrap(),
            event_type: EventType::parse("login.completed").unwrap(),
            version: SchemaVersion::parse(1).unwrap(),
            actor: Actor::parse("broker:neb-prod-1").unwrap(),
            data: Payload::parse(&data).unwrap(),
        }
    }

    /// The hand-built bytes equal the generic RFC 8785 serializer's output for the
    /// same record, member for member.
    #[test]
    fn constructor_bytes_are_the_canonical_form() {
        let ev = event("session:0f8a", json!({"z": 1, "idp": "mitid", "ä": ["\n"]}));
        let prev = record_hash(b"previous");
        let time = RecordTime::from_micros(1_795_253_400_000_001).unwrap();
        let r = Record::new(7, &prev, &time, 3, &ev).unwrap();
        let as_value = json!({
            "seq": 7, "prev": prev.to_hex(), "time": "2026-11-21T09:30:00.000001Z",
            "stream": "session:0f8a", "stream_seq": 3, "type": "login.completed",
            "version": 1, "actor": "broker:neb-prod-1",
            "data": {"z": 1, "idp": "mitid", "ä": ["\n"]}
        });
        assert_eq!(
            r.canonical(),
            canonical::to_vec(&as_value).unwrap().as_slice()
        );
        assert_eq!(r.hash(), record_hash(r.canonical()));
    }

    #[test]
    fn newtypes_refuse_malformed_input_naming_the_field() {
        for bad in [
            "",
            "session",
            ":x",
            "Session:x",
            "session:",
            "session:a b",
            "se$:x",
        ] {
            assert_eq!(StreamId::parse(bad).unwrap_err().field, "stream", "{bad:?}");
        }
        assert!(StreamId::parse("session:0f8a-1").is_ok());
        assert!(StreamId::parse("client:sp-acme").is_ok());
        for bad in [
            "",
            "login",
            "Login.completed",
            "login..x",
            "login.",
            ".x",
            "a.1b",
        ] {
            assert_eq!(EventType::parse(bad).unwrap_err().field, "type", "{bad:?}");
        }
        assert!(EventType::parse("cpr_match.attempted").is_ok());
        assert_eq!(SchemaVersion::parse(0).unwrap_err().field, "version");
        assert_eq!(
            Payload::parse(&json!([1])).unwrap_err().reason,
            "must be a JSON object"
        );
        let e = Payload::parse(&json!({"amount": 1.5})).unwrap_err();
        assert_eq!(e.field, "data/amount");
        let e = Payload::parse(&json!({"n": [9_007_199_254_740_992u64]})).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("data/n/0", "integer above 2^53 - 1")
        );
        let big = "x".repeat(Payload::MAX_BYTES);
        assert!(Payload::parse(&json!({ "t": big })).is_err());
    }
}
