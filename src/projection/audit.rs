//! The audit index: for every record, the SP clients, transaction, IdP and person it
//! concerns (see [`crate::domain::audit::attribute`]), in `audit_index` and
//! `audit_clients`, so that auditors' filtered queries read indexes rather than the
//! whole ledger. Sessions' trails between batches are kept in `audit_sessions`, and
//! their open transactions a row each in `audit_session_transactions`.
//!
//! A batch reads its sessions' trails, and the open transactions its records name (all
//! of a session's only for a logout), a query per 500, and writes back what changed the
//! same way: its work follows its own records, not the sessions' sizes.
//!
//! Batches are applied as the token projection's are: the position row is written first
//! (the database locks it, or the whole database on SQLite, until commit) and re-read
//! under that lock, so several processes apply each record once, in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
        let mut records = Vec::with_capacity(rows.len());
        let mut next = from;
        for row in &rows {
            let seq = row.seq.max(0) as u64;
            anyhow::ensure!(seq == next, "ledger gap: expected seq {next}, read {seq}");
            next = seq + 1;
            let record: Value = serde_json::from_slice(&row.canonical)?;
            let data = match record {
                Value::Object(mut m) => m.remove("data").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            records.push((row, data));
        }
        let needs = Needs::of(&records);
        crate::on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            if !claim_position!(tx, NAME, from) {
                return Ok(()); // another process indexed these meanwhile
            }
            // The batch's sessions' trails, and of their open transactions those it may
            // need: a statement per 500.
            let mut trails: HashMap<&str, (SessionTrail, bool)> = HashMap::new();
            for chunk in needs.sessions.chunks(INSERT_ROWS) {
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
                    if let Some(id) = needs.session(&id) {
                        trails.insert(id, (serde_json::from_str(&json)?, false));
                    }
                }
            }
            let mut open: Vec<(String, String, String, Option<String>)> = Vec::new();
            for chunk in needs.whole.chunks(INSERT_ROWS) {
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT session_id, transaction_id, client_id, idp \
                     FROM audit_session_transactions WHERE session_id IN (",
                );
                let mut list = select.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                select.push(")");
                open.extend(select.build_query_as().fetch_all(&mut *tx).await?);
            }
            for chunk in needs.transactions.chunks(INSERT_ROWS) {
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT session_id, transaction_id, client_id, idp \
                     FROM audit_session_transactions WHERE (session_id, transaction_id) IN ",
                );
                select.push_tuples(chunk, |mut b, (session, transaction)| {
                    b.push_bind(*session).push_bind(*transaction);
                });
                open.extend(select.build_query_as().fetch_all(&mut *tx).await?);
            }
            for (session, transaction, client, idp) in open {
                if let Some(id) = needs.session(&session) {
                    let (trail, _) = trails.entry(id).or_default();
                    trail.transactions.insert(transaction, (client, idp));
                }
            }
            let loaded: HashMap<&str, BTreeMap<String, (String, Option<String>)>> = trails
                .iter()
                .map(|(id, (trail, _))| (*id, trail.transactions.clone()))
                .collect();

            let mut indexed = Vec::with_capacity(records.len());
            for (row, data) in &records {
                let attribution = match row.stream.strip_prefix("session:") {
                    Some(id) => {
                        let (trail, ended) = trails.entry(id).or_default();
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

            // Ended sessions go with their transactions. The others' trails are stored,
            // and of their transactions those that ended are removed and those that
            // began or changed are stored: a statement per 500 each.
            let (ended, kept): (Vec<_>, Vec<_>) = trails.iter().partition(|(_, (_, e))| *e);
            let ended: Vec<&str> = ended.into_iter().map(|(id, _)| *id).collect();
            for table in ["audit_sessions", "audit_session_transactions"] {
                for chunk in ended.chunks(INSERT_ROWS) {
                    let mut delete = sqlx::QueryBuilder::new(format!(
                        "DELETE FROM {table} WHERE session_id IN ("
                    ));
                    let mut list = delete.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    delete.push(")");
                    delete.build().execute(&mut *tx).await?;
                }
            }
            let mut gone: Vec<(&str, &str)> = Vec::new();
            let mut changed: Vec<(&str, &str, &str, Option<&str>)> = Vec::new();
            for (id, (trail, _)) in &kept {
                let before = loaded.get(*id);
                for transaction in before.into_iter().flat_map(|b| b.keys()) {
                    if !trail.transactions.contains_key(transaction) {
                        gone.push((id, transaction));
                    }
                }
                for (transaction, now) in &trail.transactions {
                    if before.and_then(|b| b.get(transaction)) != Some(now) {
                        changed.push((id, transaction, &now.0, now.1.as_deref()));
                    }
                }
            }
            for chunk in gone.chunks(INSERT_ROWS) {
                let mut delete = sqlx::QueryBuilder::new(
                    "DELETE FROM audit_session_transactions WHERE (session_id, transaction_id) IN ",
                );
                delete.push_tuples(chunk, |mut b, (session, transaction)| {
                    b.push_bind(*session).push_bind(*transaction);
                });
                delete.build().execute(&mut *tx).await?;
            }
            for chunk in changed.chunks(INSERT_ROWS) {
                let mut upsert = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_session_transactions (session_id, transaction_id, client_id, idp) ",
                );
                upsert.push_values(chunk, |mut b, (session, transaction, client, idp)| {
                    b.push_bind(*session)
                        .push_bind(*transaction)
                        .push_bind(*client)
                        .push_bind(*idp);
                });
                upsert.push(
                    " ON CONFLICT (session_id, transaction_id) DO UPDATE \
                     SET client_id = excluded.client_id, idp = excluded.idp",
                );
                upsert.build().execute(&mut *tx).await?;
            }
            for chunk in kept.chunks(INSERT_ROWS) {
                let states = chunk
                    .iter()
                    .map(|(id, (trail, _))| Ok((**id, serde_json::to_string(trail)?)))
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

/// What a batch needs of its sessions' open transactions: for a session with a record
/// that names neither a transaction nor a client (a logout: it concerns every SP the
/// session served), all of them; otherwise only those its records name.
struct Needs<'a> {
    sessions: Vec<&'a str>,
    whole: Vec<&'a str>,
    transactions: Vec<(&'a str, &'a str)>,
}

impl<'a> Needs<'a> {
    fn of(records: &'a [(&'a crate::ledger::StoredRow, Value)]) -> Needs<'a> {
        let mut sessions = BTreeSet::new();
        let mut whole = BTreeSet::new();
        let mut transactions = BTreeSet::new();
        for (row, data) in records {
            let Some(id) = row.stream.strip_prefix("session:") else {
                continue;
            };
            sessions.insert(id);
            match data.get("transaction_id").and_then(Value::as_str) {
                Some(transaction) => {
                    transactions.insert((id, transaction));
                }
                None if data.get("client_id").is_none() => {
                    whole.insert(id);
                }
                None => {}
            }
        }
        transactions.retain(|(id, _)| !whole.contains(id));
        // Sorted, as they came out of the set: `session` searches them.
        Needs {
            sessions: sessions.into_iter().collect(),
            whole: whole.into_iter().collect(),
            transactions: transactions.into_iter().collect(),
        }
    }

    /// The batch's own borrow of a session id read back from the database.
    fn session(&self, id: &str) -> Option<&'a str> {
        self.sessions
            .binary_search(&id)
            .ok()
            .map(|i| self.sessions[i])
    }
}
