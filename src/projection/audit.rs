//! The audit index: for every record, the SP clients, transaction, IdP and person it
//! concerns (see [`crate::domain::audit::attribute`]), in `audit_index` and
//! `audit_clients`, so that auditors' filtered queries read indexes rather than the
//! whole ledger. Sessions' trails between batches are kept in `audit_sessions`.
//!
//! Batches are applied as the token projection's are: the position row is written first
//! (the database locks it, or the whole database on SQLite, until commit) and re-read
//! under that lock, so several processes apply each record once, in order.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::Signals;
use crate::db::Db;
use crate::domain::audit::{attribute, SessionTrail};
use crate::ledger::Reader;

const NAME: &str = "audit_index";
/// Records applied per database transaction.
const BATCH: u32 = 1000;
/// Rows per multi-row INSERT (6 parameters each, under both backends' limits).
const INSERT_ROWS: usize = 500;

#[derive(Clone)]
pub struct AuditIndex {
    db: Db,
    reader: Reader,
    signals: Signals,
}

impl AuditIndex {
    /// `db` is where batches write; reads go through the reader's pool.
    pub fn new(db: Db, reader: Reader) -> AuditIndex {
        AuditIndex {
            db,
            reader,
            signals: Signals::default(),
        }
    }

    pub fn nudge(&self) {
        self.signals.nudge();
    }

    pub(crate) fn signals(&self) -> &Signals {
        &self.signals
    }

    /// Indexes every committed record after the stored position; returns the new
    /// position (the first `seq` not indexed).
    pub async fn catch_up(&self) -> anyhow::Result<u64> {
        self.signals
            .catch_up(
                || self.position(),
                |from| async move {
                    let head = self.reader.head().await?.next_seq;
                    Ok((from < head).then_some(head))
                },
                |from, head| self.batch(from, head),
            )
            .await
    }

    /// Waits until every record below `seq` is indexed, or `timeout`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> anyhow::Result<bool> {
        self.signals
            .wait_for(seq, timeout, || self.position())
            .await
    }

    /// The first `seq` not yet indexed: queries see the records below it.
    pub async fn position(&self) -> anyhow::Result<u64> {
        super::position(self.reader.db(), NAME).await
    }

    async fn batch(&self, from: u64, head: u64) -> anyhow::Result<()> {
        // Read before the transaction: on SQLite it holds the write lock and must not
        // wait for a read connection.
        let rows = self.reader.range(from, head - 1, BATCH).await?;
        crate::on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO projection_positions (name, next_seq) VALUES ($1, 0) \
                 ON CONFLICT (name) DO UPDATE SET next_seq = projection_positions.next_seq",
            )
            .bind(NAME)
            .execute(&mut *tx)
            .await?;
            let (from_now,): (i64,) =
                sqlx::query_as("SELECT next_seq FROM projection_positions WHERE name = $1")
                    .bind(NAME)
                    .fetch_one(&mut *tx)
                    .await?;
            if from_now.max(0) as u64 != from {
                return Ok(()); // another process indexed these meanwhile
            }
            let mut trails: HashMap<String, (SessionTrail, bool)> = HashMap::new();
            let mut indexed = Vec::with_capacity(rows.len());
            let mut next = from;
            for row in &rows {
                let seq = row.seq.max(0) as u64;
                anyhow::ensure!(seq == next, "ledger gap: expected seq {next}, read {seq}");
                next = seq + 1;
                let record: Value = serde_json::from_slice(&row.canonical)?;
                let data = record.get("data").unwrap_or(&Value::Null);
                let session = row.stream.strip_prefix("session:");
                let attribution = match session {
                    Some(id) => {
                        if !trails.contains_key(id) {
                            let stored: Option<(String,)> = sqlx::query_as(
                                "SELECT state FROM audit_sessions WHERE session_id = $1",
                            )
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let trail = match stored {
                                Some((json,)) => serde_json::from_str(&json)?,
                                None => SessionTrail::default(),
                            };
                            trails.insert(id.to_owned(), (trail, false));
                        }
                        let (trail, ended) = trails.get_mut(id).expect("inserted above");
                        *ended |= row.event_type == "session.logged_out";
                        attribute(&row.event_type, data, Some(trail))
                    }
                    None => attribute(&row.event_type, data, None),
                };
                indexed.push((row.seq, row.event_type.as_str(), attribution));
            }
            for chunk in indexed.chunks(INSERT_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_index (seq, event_type, transaction_id, idp, subject_key, cpr_ref) ",
                );
                insert.push_values(chunk, |mut b, (seq, ty, a)| {
                    b.push_bind(*seq)
                        .push_bind(*ty)
                        .push_bind(a.transaction_id.clone())
                        .push_bind(a.idp.clone())
                        .push_bind(a.subject_key.clone())
                        .push_bind(a.cpr_ref.clone());
                });
                insert.build().execute(&mut *tx).await?;
                let clients: Vec<(i64, &str)> = chunk
                    .iter()
                    .flat_map(|(seq, _, a)| a.clients.iter().map(move |c| (*seq, c.as_str())))
                    .collect();
                if !clients.is_empty() {
                    let mut insert =
                        sqlx::QueryBuilder::new("INSERT INTO audit_clients (client_id, seq) ");
                    insert.push_values(&clients, |mut b, (seq, client)| {
                        b.push_bind(*client).push_bind(*seq);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
            }
            for (id, (trail, ended)) in &trails {
                if *ended {
                    sqlx::query("DELETE FROM audit_sessions WHERE session_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query(
                        "INSERT INTO audit_sessions (session_id, state) VALUES ($1, $2) \
                         ON CONFLICT (session_id) DO UPDATE SET state = excluded.state",
                    )
                    .bind(id)
                    .bind(serde_json::to_string(trail)?)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("UPDATE projection_positions SET next_seq = $2 WHERE name = $1")
                .bind(NAME)
                .bind(i64::try_from(next)?)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
