//! The ledger: one global, gapless, hash-chained log of records (SPEC sections 1-3, 8).
//!
//! Appends go through a single writer task per process that batches concurrent callers
//! into one database transaction (group commit). Across processes, writers serialize on
//! the `ledger_head` row lock. A caller is answered only after its group has committed.

pub mod chain;
pub mod read;
mod store;
mod write;

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::record::{Actor, Event, EventType, FieldError, Payload, SchemaVersion, StreamId};
use crate::spec::hash::Hash32;

pub use read::{Reader, StoredRow};
pub use write::{Clock, Hook, Ledger, LedgerOptions, Stage, WriterStats};

/// One event to append, with the `stream_seq` its caller expects it to take.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub stream_seq: u64,
    pub event: Event,
}

impl NewEvent {
    /// Parses `{"stream", "stream_seq", "type", "version", "data"}` from a caller; the
    /// actor comes from authentication, never from the body. Errors name the member as
    /// `<prefix>/<member>`.
    pub fn from_json(value: &Value, actor: &Actor, prefix: &str) -> Result<NewEvent, FieldError> {
        let at = |member: &str| format!("{prefix}{member}");
        let rename = |e: FieldError| FieldError::new(format!("{prefix}{}", e.field), e.reason);
        let obj = value.as_object().ok_or_else(|| {
            FieldError::new(prefix.trim_end_matches('/'), "must be a JSON object")
        })?;
        if let Some(extra) = obj.keys().find(|k| {
            !matches!(
                k.as_str(),
                "stream" | "stream_seq" | "type" | "version" | "data"
            )
        }) {
            return Err(FieldError::new(at(extra), "unknown member"));
        }
        let string = |member: &str| {
            obj.get(member)
                .ok_or_else(|| FieldError::new(at(member), "is required"))?
                .as_str()
                .ok_or_else(|| FieldError::new(at(member), "must be a string"))
        };
        let integer = |member: &str| {
            obj.get(member)
                .ok_or_else(|| FieldError::new(at(member), "is required"))?
                .as_u64()
                .ok_or_else(|| FieldError::new(at(member), "must be a non-negative integer"))
        };
        let stream = StreamId::parse(string("stream")?).map_err(rename)?;
        let stream_seq = integer("stream_seq")?;
        if stream_seq == 0 || stream_seq > crate::spec::MAX_SAFE_INTEGER {
            return Err(FieldError::new(
                at("stream_seq"),
                "must be an integer from 1 to 2^53 - 1",
            ));
        }
        let event_type = EventType::parse(string("type")?).map_err(rename)?;
        let version = SchemaVersion::parse(integer("version")?).map_err(rename)?;
        let data = Payload::parse(obj.get("data").unwrap_or(&Value::Null)).map_err(rename)?;
        Ok(NewEvent {
            stream_seq,
            event: Event {
                stream,
                event_type,
                version,
                actor: actor.clone(),
                data,
            },
        })
    }

    /// Parses a JSON array of events, naming errors `events/<i>/<member>`.
    pub fn list_from_json(value: &Value, actor: &Actor) -> Result<Vec<NewEvent>, FieldError> {
        value
            .as_array()
            .ok_or_else(|| FieldError::new("events", "must be a JSON array"))?
            .iter()
            .enumerate()
            .map(|(i, v)| NewEvent::from_json(v, actor, &format!("events/{i}/")))
            .collect()
    }
}

/// Events appended all-or-nothing. Within a batch each stream's events must carry
/// consecutive `stream_seq`s; whether the first one follows the stream's last record is
/// decided under the chain-head lock.
#[derive(Clone, Debug)]
pub struct AppendBatch {
    events: Vec<NewEvent>,
}

impl AppendBatch {
    /// Events one batch may hold.
    pub const MAX_EVENTS: usize = 1000;
    /// Up to this many events, a batch's streams are compared pairwise, not hashed.
    const SHORT: usize = 16;

    pub fn new(events: Vec<NewEvent>) -> Result<AppendBatch, FieldError> {
        if events.is_empty() {
            return Err(FieldError::new("events", "must hold at least one event"));
        }
        if events.len() > Self::MAX_EVENTS {
            return Err(FieldError::new(
                "events",
                "more than 1000 events in one append",
            ));
        }
        // A map only for long batches (see `first_per_stream`).
        let mut last: Option<HashMap<&StreamId, u64>> =
            (events.len() > Self::SHORT).then(HashMap::new);
        for (i, e) in events.iter().enumerate() {
            let field = || format!("events/{i}/stream_seq");
            if e.stream_seq == 0 || e.stream_seq > crate::spec::MAX_SAFE_INTEGER {
                return Err(FieldError::new(
                    field(),
                    "must be an integer from 1 to 2^53 - 1",
                ));
            }
            let prev = match last.as_mut() {
                Some(last) => last.insert(&e.event.stream, e.stream_seq),
                None => events[..i]
                    .iter()
                    .rev()
                    .find(|p| p.event.stream == e.event.stream)
                    .map(|p| p.stream_seq),
            };
            if let Some(prev) = prev {
                if e.stream_seq != prev + 1 {
                    return Err(FieldError::new(
                        field(),
                        "events of one stream must have consecutive stream_seq values",
                    ));
                }
            }
        }
        Ok(AppendBatch { events })
    }

    pub fn events(&self) -> &[NewEvent] {
        &self.events
    }

    /// Each stream the batch touches with the first `stream_seq` it claims there: the
    /// events whose stream no earlier event of the batch has.
    pub fn first_per_stream(&self) -> impl Iterator<Item = (&StreamId, u64)> {
        // A set only for long batches: this runs on the single writer for every append,
        // nearly all of them one or a few events, and for up to 1000.
        let mut seen: Option<HashSet<&StreamId>> =
            (self.events.len() > Self::SHORT).then(HashSet::new);
        self.events
            .iter()
            .enumerate()
            .filter(move |(i, e)| match seen.as_mut() {
                Some(seen) => seen.insert(&e.event.stream),
                None => !self.events[..*i]
                    .iter()
                    .any(|p| p.event.stream == e.event.stream),
            })
            .map(|(_, e)| (&e.event.stream, e.stream_seq))
    }
}

/// What a caller is told about one committed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: Hash32,
    pub stream_seq: u64,
    pub time_micros: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("invalid append: {0}")]
    Invalid(FieldError),
    /// The stream's last record is not the one the caller expected; nothing was appended.
    #[error("stream {stream}: expected stream_seq {expected}, but the stream is at {actual}")]
    Conflict {
        stream: StreamId,
        expected: u64,
        actual: u64,
    },
    /// The group failed before its commit was sent; nothing was appended.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The connection failed while COMMIT was in flight: the group may or may not be in
    /// the chain. Callers retry with the same stream positions; a conflict then means
    /// it was.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
}
