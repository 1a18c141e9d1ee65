//! The service's view of registered SP clients ([`RegisteredClients`]): loaded from the
//! ledger's `client.registered` records at start, fed by `POST /v1/clients` as it appends,
//! and caught up from the ledger before a session refuses a client as unregistered (so
//! that a client registered through another instance on the same database is seen).

use std::sync::Arc;

use serde_json::Value;

use crate::domain::client::{ClientEvent, RegisteredClients, TokenSettings};
use crate::domain::session::ClientRegistry;
use crate::domain::values::{ClientId, Environment};
use crate::domain::LedgerEvent;
use crate::ledger::Reader;

const PAGE: u32 = 1000;

pub struct ClientsView {
    clients: Arc<RegisteredClients>,
    /// The last `seq` up to which the ledger has been read.
    scanned: tokio::sync::Mutex<Option<u64>>,
}

impl ClientsView {
    /// Reads every `client.registered` record.
    pub async fn load(reader: &Reader) -> anyhow::Result<ClientsView> {
        let view = ClientsView {
            clients: Arc::new(RegisteredClients::default()),
            scanned: tokio::sync::Mutex::new(None),
        };
        view.catch_up(reader).await?;
        Ok(view)
    }

    /// Reads the `client.registered` records appended since the last read: only the
    /// `seq` range between the head then and the head now is scanned.
    pub async fn catch_up(&self, reader: &Reader) -> anyhow::Result<()> {
        let mut scanned = self.scanned.lock().await;
        // Every record below the head's `next_seq` is committed.
        let Some(to) = reader.head().await?.next_seq.checked_sub(1) else {
            return Ok(());
        };
        loop {
            let rows = reader
                .of_type("client.registered", *scanned, to, PAGE)
                .await?;
            let done = rows.len() < PAGE as usize;
            for row in &rows {
                let record: Value = serde_json::from_slice(&row.canonical)?;
                let version = record["version"].as_u64().unwrap_or(0);
                let event = ClientEvent::from_record_parts(
                    &row.event_type,
                    u32::try_from(version).unwrap_or(0),
                    record.get("data").cloned().unwrap_or(Value::Null),
                )
                .map_err(|e| anyhow::anyhow!("record {}: {}: {}", row.seq, e.field, e.reason))?;
                self.clients.record(&event);
            }
            if done {
                *scanned = Some(to);
                return Ok(());
            }
            *scanned = rows.last().map(|r| r.seq.max(0) as u64);
        }
    }

    /// An event just appended.
    pub fn record(&self, event: &ClientEvent) {
        self.clients.record(event);
    }

    pub fn registry(&self) -> Arc<dyn ClientRegistry> {
        self.clients.clone()
    }

    /// How `client_id`'s tokens in `environment` are sealed, if it is registered there.
    pub fn token_settings(
        &self,
        client_id: &ClientId,
        environment: Environment,
    ) -> Option<TokenSettings> {
        self.clients.token_settings(client_id, environment)
    }

    /// The view itself, for the token sealer (each client's token settings).
    pub fn clients(&self) -> Arc<RegisteredClients> {
        self.clients.clone()
    }
}
