//! The audit index: for every record, the SP clients, transaction, IdP and person it
//! concerns (see [`crate::domain::audit::attribute`]), in `audit_index` and
//! `audit_clients`, so that auditors' filtered queries read indexes rather than the
//! whole ledger. Sessions' trails between batches are kept in `audit_sessions`.
//!
//! A batch reads its sessions' trails in one query and writes them back a statement per
//! 500, so its round trips do not grow with the sessions it touches.
//!
//! Batches are applied as the token projection's are: the position row is written first
//! (the database locks it, or the whole database on SQLite, until commit) and re-read
//! under that lock, so several processes apply each record once, in order.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{claim_position, set_position, Signals};
use crate::db::Db;
use crate::domain::audit::{attribute, SessionTrail};
use crate::ledger::Reader;

const NAME: &str = "audit_index";
/// Records applied per database transaction.
const BATCH: u32 = 1000;
/// Rows per multi-row INSERT (at most 6 parameters each, under both backends' limits).
const INSERT_ROWS: usize = 500;

/// The index's size at which its statistics are first refreshed; then at each doubling.
const ANALYZE_FROM: u64 = 100_000;

#[derive(Clone)]
pub struct AuditIndex {
    db: Db,
    reader: Reader,
    signals: Signals,
    /// The position at which this process last refreshed the planner's statistics.
    analyzed_at: Arc<AtomicU64>,
}

impl AuditIndex {
    /// `db` is where batches write; reads go through the reader's pool.
    pub fn new(db: Db, reader: Reader) -> AuditIndex {
        AuditIndex {
            db,
            reader,
            signals: Signals::default(),
            analyzed_at: Arc::new(AtomicU64::new(0)),
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
                |from| super::to_head(&self.reader, from),
                |from, head| async move {
                    self.batch(from, head).await?;
                    self.refresh_statistics(head.min(from + u64::from(BATCH)))
                        .await
                },
            )
            .await
    }

    /// Refreshes the planner's statistics of the index once it has doubled since the last
    /// time (and once per process). Without them a query planned on the statistics of a
    /// much smaller index can walk all of it: seen at 10,000,000 records on PostgreSQL
    /// before autovacuum had analyzed the tables, 2 to 11 s for a page a fresh ANALYZE
    /// answers in 2 ms. SQLite never gathers statistics by itself.
    async fn refresh_statistics(&self, position: u64) -> anyhow::Result<()> {
        let last = self.analyzed_at.load(Ordering::Relaxed);
        if position < (last * 2).max(ANALYZE_FROM) {
            return Ok(());
        }
        let statements: &[&str] = match &self.db {
            // The ledger's own table too: queries join it, and without its statistics
            // PostgreSQL (seen with autovacuum off, at 1,000,000 records) read it whole
            // by `seq` for a stream's records, 67 ms a page where its index answers in
            // 1 ms. PostgreSQL's ANALYZE does not block appends.
            Db::Postgres(_) => &["ANALYZE ledger_records, audit_index, audit_clients"],
            // At most 1,000 rows of each index are read: enough to choose an index.
            // Not the ledger's table: SQLite's ANALYZE holds the write lock, and its
            // planner picks the ledger's indexes without statistics.
            Db::Sqlite(_) => &[
                "PRAGMA analysis_limit = 1000",
                "ANALYZE audit_index",
                "ANALYZE audit_clients",
            ],
        };
        crate::on_pool!(&self.db, p => {
            // One connection: the PRAGMA holds for its connection only.
            let mut conn = p.acquire().await?;
            for sql in statements {
                sqlx::query(sql).execute(&mut *conn).await?;
            }
        });
        self.analyzed_at.store(position, Ordering::Relaxed);
        tracing::info!(records = position, "audit index statistics refreshed");
        Ok(())
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
            if !claim_position!(tx, NAME, from) {
                return Ok(()); // another process indexed these meanwhile
            }
            // The trails of the batch's sessions, read in one query.
            let ids: BTreeSet<&str> = rows
                .iter()
                .filter_map(|r| r.stream.strip_prefix("session:"))
                .collect();
            let mut trails: HashMap<String, (SessionTrail, bool)> = HashMap::new();
            let ids: Vec<&str> = ids.into_iter().collect();
            for chunk in ids.chunks(INSERT_ROWS) {
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT session_id, state FROM audit_sessions WHERE session_id IN (",
                );
                let mut list = select.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                select.push(")");
                let stored: Vec<(String, String)> =
                    select.build_query_as().fetch_all(&mut *tx).await?;
                for (id, json) in stored {
                    trails.insert(id, (serde_json::from_str(&json)?, false));
                }
            }
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
                        let (trail, ended) = trails.entry(id.to_owned()).or_default();
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
                let clients: Vec<(i64, &str, &str, Option<&str>)> = chunk
                    .iter()
                    .flat_map(|(seq, ty, a)| {
                        a.clients
                            .iter()
                            .map(move |c| (*seq, c.as_str(), *ty, a.idp.as_deref()))
                    })
                    .collect();
                if !clients.is_empty() {
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO audit_clients (client_id, seq, event_type, idp) ",
                    );
                    insert.push_values(&clients, |mut b, (seq, client, ty, idp)| {
                        b.push_bind(*client)
                            .push_bind(*seq)
                            .push_bind(*ty)
                            .push_bind(*idp);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
            }
            // Ended sessions' trails go; the others are stored, a statement per 500.
            let (ended, open): (Vec<_>, Vec<_>) = trails.iter().partition(|(_, (_, e))| *e);
            for chunk in ended.chunks(INSERT_ROWS) {
                let mut delete =
                    sqlx::QueryBuilder::new("DELETE FROM audit_sessions WHERE session_id IN (");
                let mut list = delete.separated(", ");
                for (id, _) in chunk {
                    list.push_bind(id.as_str());
                }
                delete.push(")");
                delete.build().execute(&mut *tx).await?;
            }
            for chunk in open.chunks(INSERT_ROWS) {
                let states = chunk
                    .iter()
                    .map(|(id, (trail, _))| Ok((id.as_str(), serde_json::to_string(trail)?)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let mut upsert =
                    sqlx::QueryBuilder::new("INSERT INTO audit_sessions (session_id, state) ");
                upsert.push_values(states, |mut b, (id, state)| {
                    b.push_bind(id).push_bind(state);
                });
                upsert.push(
                    " ON CONFLICT (session_id) DO UPDATE SET state = excluded.state",
                );
                upsert.build().execute(&mut *tx).await?;
            }
            set_position!(tx, NAME, next);
            tx.commit().await?;
        });
        Ok(())
    }
}
