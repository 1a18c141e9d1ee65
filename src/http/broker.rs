//! What the broker routes share: the role check, the answer listing what was recorded,
//! and ids made by Vidne when the caller gives none.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{Broker, Call};
use super::ApiError;
use crate::app::Executed;
use crate::domain::LedgerEvent;
use crate::record::StreamId;

/// A broker route's caller and JSON body, role checked before the body is read. Every
/// broker route is for the broker's key alone: the admin manages keys and clients, and
/// what a broker records is its own evidence.
pub type BrokerCall<T> = Call<T, Broker>;

/// One appended record, as the answer shows it.
#[derive(Serialize, ToSchema)]
pub struct RecordedEvent {
    /// Its place in the ledger.
    pub seq: u64,
    /// The record hash (SPEC section 2), hex.
    pub hash: String,
    /// `session:<id>`, `transfer:<code>` or `maintenance:<id>`.
    pub stream: String,
    pub stream_seq: u64,
    /// The event type, e.g. `session.login_completed` (`schemas/events/`).
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// The event's members, as recorded.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The records `done` appended on `stream`, in order.
pub fn recorded<E: LedgerEvent>(stream: &StreamId, done: &Executed<E>) -> Vec<RecordedEvent> {
    done.events
        .iter()
        .map(|(event, ack)| RecordedEvent {
            seq: ack.seq,
            hash: ack.hash.to_hex(),
            stream: stream.to_string(),
            stream_seq: ack.stream_seq,
            event_type: event.type_name(),
            data: event.data(),
        })
        .collect()
}

/// If `done` recorded a refusal (the 4th CPR match), the error to answer with now that
/// it is appended.
pub fn refusal_of<E: LedgerEvent>(done: &Executed<E>) -> Result<(), ApiError> {
    match done.events.iter().find_map(|(e, _)| e.refusal()) {
        Some(refusal) => Err(refusal.into()),
        None => Ok(()),
    }
}

/// A new id for Vidne to name something the caller did not: `prefix` and 128 random
/// bits, base64url.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}
