//! The broker domain (issue 3): what an eID broker records, and the rules the seeds state,
//! decided by cqrs-es aggregates.
//!
//! Pure: no HTTP, no SQL, no clock, no I/O. Every time a rule needs comes in a command
//! field ([`Timestamp`]), read from the clock at the edge; the caller (actor, request id)
//! travels as record metadata and never reaches an aggregate.
//!
//! - [`session::Session`]: one broker session (`session:<id>`), its transactions (one per
//!   authentication request of an SP) and everything done in them.
//! - [`transfer::ControlledTransfer`]: one MitID Controlled Transfer exchange code
//!   (`transfer:<code>`).
//! - [`client::Client`]: an SP client registered per environment (`client:<client_id>`).
//! - [`maintenance::MaintenanceWindow`]: an IdP maintenance window (`maintenance:<id>`).
//!
//! `handle` validates everything before it writes its first event, so a command that
//! returns `Err` has written nothing. A refusal the seeds want *recorded* (the 4th CPR
//! match of a session) is an `Ok` with a refusal event; [`LedgerEvent::refusal`] tells the
//! edge to answer it with that 4xx error. `docs/events.md` lists every event.

pub mod audit;
pub mod client;
pub mod codes;
mod error;
pub mod html;
pub mod maintenance;
pub mod report;
pub mod session;
pub mod token;
pub mod transfer;
pub mod values;

#[cfg(test)]
mod schema_tests;

pub use error::DomainError;

use cqrs_es::{Aggregate, DomainEvent};
use serde_json::Value;

use crate::record::{EventType, FieldError, Payload, SchemaVersion};

/// An aggregate's event as a ledger record's `type`, `version` and `data`.
///
/// Every event enum is serialized adjacently tagged (`{"type": "...", "data": {...}}`), so
/// the ledger's `data` is exactly the event's own struct.
pub trait LedgerEvent: DomainEvent {
    /// Every `(type, version)` this enum writes, for schema checks and readers.
    const TYPES: &'static [(&'static str, u32)];

    /// The dotted ledger type, e.g. `session.login_completed`.
    fn type_name(&self) -> &'static str;

    /// The schema version of this event's `data`.
    fn schema_version(&self) -> u32 {
        let name = self.type_name();
        Self::TYPES
            .iter()
            .find(|(t, _)| *t == name)
            .map(|(_, v)| *v)
            .expect("every variant is listed in TYPES")
    }

    /// The error the edge answers with when this event records a refusal (an event that
    /// is appended although the caller's request was refused), else `None`.
    fn refusal(&self) -> Option<DomainError> {
        None
    }

    /// The event's `data` member as a JSON value.
    fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("data").unwrap_or(Value::Null),
            _ => unreachable!("events serialize to {{type, data}} objects"),
        }
    }

    /// The record members this event becomes.
    fn to_record_parts(&self) -> Result<(EventType, SchemaVersion, Payload), FieldError> {
        Ok((
            EventType::parse(self.type_name())?,
            SchemaVersion::parse(u64::from(self.schema_version()))?,
            Payload::parse(&self.data())?,
        ))
    }

    /// Reads an event back from a record's `type`, `version` and `data`.
    fn from_record_parts(event_type: &str, version: u32, data: Value) -> Result<Self, FieldError> {
        match Self::TYPES.iter().find(|(t, _)| *t == event_type) {
            None => return Err(FieldError::new("type", "not an event type of this stream")),
            Some((_, v)) if *v != version => {
                return Err(FieldError::new(
                    "version",
                    "no reader for this schema version",
                ))
            }
            Some(_) => {}
        }
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|e| FieldError::new("data", e.to_string()))
    }
}

/// Runs one command against an aggregate and returns the events it decided, applied to
/// `aggregate` already. On `Err` nothing was written, but `aggregate` should be dropped
/// all the same (reload it from its events).
pub async fn decide<A: Aggregate>(
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
) -> Result<Vec<A::Event>, A::Error> {
    let sink = cqrs_es::event_sink::EventSink::default();
    aggregate.handle(command, services, &sink).await?;
    Ok(sink.collect().await)
}

/// Implements `cqrs_es::DomainEvent` from [`LedgerEvent`].
macro_rules! domain_event {
    ($name:ty) => {
        impl cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                $crate::domain::LedgerEvent::type_name(self).to_string()
            }

            fn event_version(&self) -> String {
                $crate::domain::LedgerEvent::schema_version(self).to_string()
            }
        }
    };
}
pub(crate) use domain_event;

pub use values::Timestamp;
