//! Compliance reports: per SP client and UTC day, the counts
//! [`crate::domain::report::tally`] makes of the ledger, in `report_daily`.
//!
//! The projection advances one signed checkpoint at a time: each batch ends at the next
//! checkpoint's tree size, so its stored position is always the size of a checkpoint and
//! a report can name the one checkpoint (size and root) whose records it counted. It
//! reads a record's SP from the audit index, so it never runs ahead of that index.
//!
//! A batch reads and counts before its write transaction (the counts are small: one per
//! client, day, metric and key), then adds them and moves the position in one short
//! transaction that re-reads the position under the row's lock, so several processes
//! count each record once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{claim_position, set_position, AuditIndex, Signals};
use crate::db::Db;
use crate::domain::report::{tally, Announced, Metric, CONTEXT_TYPES, READ_TYPES};
use crate::ledger::Reader;

const NAME: &str = "compliance_reports";
/// Records read per query while counting a batch.
const PAGE: u64 = 5000;
/// Rows per multi-row INSERT (5 parameters each).
const INSERT_ROWS: usize = 500;

/// One stored count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyCount {
    pub client_id: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub metric: Metric,
    pub key: String,
    pub count: u64,
}

type Key = (String, String, Metric, String);
/// A `report_daily` row as read.
type Row = (String, String, String, String, i64);

#[derive(Clone)]
pub struct Reports {
    db: Db,
    reader: Reader,
    index: AuditIndex,
    signals: Signals,
}

/// `'a', 'b'`: a list of the event types above (constants, not input) for `IN (…)`.
fn sql_list(types: &[&str]) -> String {
    types
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Reports {
    /// `db` is where batches write; reads go through the reader's pool. It follows the
    /// audit index, in the same task: a nudge to one is a nudge to both.
    pub fn new(db: Db, reader: Reader, index: AuditIndex) -> Reports {
        let signals = index.signals().clone();
        Reports {
            db,
            reader,
            index,
            signals,
        }
    }

    pub fn nudge(&self) {
        self.signals.nudge();
    }

    /// The first `seq` not counted: always 0 or the tree size of a signed checkpoint.
    pub async fn position(&self) -> anyhow::Result<u64> {
        super::position(self.reader.db(), NAME).await
    }

    /// Counts every checkpoint the audit index has covered; returns the new position.
    pub async fn catch_up(&self) -> anyhow::Result<u64> {
        self.signals
            .catch_up(
                || self.position(),
                |from| self.next_checkpoint(from),
                |from, to| self.batch(from, to),
            )
            .await
    }

    /// Waits until the records below `seq` are counted, or `timeout`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> anyhow::Result<bool> {
        self.signals
            .wait_for(seq, timeout, || self.position())
            .await
    }

    /// The smallest checkpoint size above `from` that the audit index has reached.
    async fn next_checkpoint(&self, from: u64) -> anyhow::Result<Option<u64>> {
        let indexed = self.index.position().await?;
        if indexed <= from {
            return Ok(None);
        }
        let sql = "SELECT MIN(tree_size) FROM log_checkpoints \
                   WHERE tree_size > $1 AND tree_size <= $2";
        let (size,): (Option<i64>,) = crate::on_pool!(self.reader.db(), p => sqlx::query_as(sql)
            .bind(i64::try_from(from)?)
            .bind(i64::try_from(indexed)?)
            .fetch_one(p)
            .await?);
        Ok(size.map(|s| s.max(0) as u64))
    }

    /// The maintenance windows and client environments recorded below `to`.
    async fn announced(&self, to: u64) -> anyhow::Result<Announced> {
        let types = sql_list(CONTEXT_TYPES);
        let sql = format!(
            "SELECT r.seq, r.event_type, r.canonical FROM audit_index a \
             JOIN ledger_records r ON r.seq = a.seq \
             WHERE a.event_type IN ({types}) AND a.seq < $1 ORDER BY a.seq"
        );
        let rows: Vec<(i64, String, Vec<u8>)> = crate::on_pool!(self.reader.db(), p => {
            sqlx::query_as(&sql).bind(i64::try_from(to)?).fetch_all(p).await?
        });
        let mut announced = Announced::default();
        for (seq, event_type, canonical) in rows {
            let record: Value = serde_json::from_slice(&canonical)?;
            let data = record.get("data").unwrap_or(&Value::Null);
            announced.observe(seq.max(0) as u64, &event_type, data);
        }
        Ok(announced)
    }

    /// Counts the records in `from..to` and stores the sums with position `to`.
    async fn batch(&self, from: u64, to: u64) -> anyhow::Result<()> {
        let announced = self.announced(to).await?;
        let sql = format!(
            "SELECT r.seq, r.event_type, r.time_us, r.canonical, c.client_id \
             FROM ledger_records r JOIN audit_clients c ON c.seq = r.seq \
             WHERE r.seq >= $1 AND r.seq < $2 AND c.seq >= $1 AND c.seq < $2 \
             AND r.event_type IN ({}) \
             ORDER BY r.seq, c.client_id",
            sql_list(READ_TYPES)
        );
        // The range is stated on both tables (planners carry equalities across a join,
        // not ranges), and `audit_clients (seq)` (migration 0010) answers it on `c`:
        // without both, PostgreSQL read all of audit_clients for each page, 2 s a page at
        // 10,000,000 records (`vidne bench audit`).
        let mut counts: BTreeMap<Key, u64> = BTreeMap::new();
        let mut page_from = from;
        while page_from < to {
            let page_to = (page_from + PAGE).min(to);
            let rows: Vec<(i64, String, i64, Vec<u8>, String)> = crate::on_pool!(self.reader.db(), p => sqlx::query_as(&sql)
                    .bind(i64::try_from(page_from)?)
                    .bind(i64::try_from(page_to)?)
                    .fetch_all(p)
                    .await?);
            for (seq, event_type, time_us, canonical, client) in rows {
                let record: Value = serde_json::from_slice(&canonical)?;
                let data = record.get("data").unwrap_or(&Value::Null);
                let day = chrono::DateTime::from_timestamp_micros(time_us)
                    .ok_or_else(|| anyhow::anyhow!("seq {seq}: time out of range"))?
                    .format("%Y-%m-%d")
                    .to_string();
                for (metric, key) in
                    tally(seq.max(0) as u64, &event_type, data, &client, &announced)
                {
                    *counts
                        .entry((client.clone(), day.clone(), metric, key))
                        .or_default() += 1;
                }
            }
            page_from = page_to;
        }
        let counts: Vec<(Key, u64)> = counts.into_iter().collect();
        crate::on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            if !claim_position!(tx, NAME, from) {
                return Ok(()); // another process counted these meanwhile
            }
            for chunk in counts.chunks(INSERT_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO report_daily (client_id, day, metric, key, count) ",
                );
                insert.push_values(chunk, |mut b, ((client, day, metric, key), n)| {
                    b.push_bind(client.as_str())
                        .push_bind(day.as_str())
                        .push_bind(metric.as_str())
                        .push_bind(key.as_str())
                        .push_bind(*n as i64);
                });
                insert.push(
                    " ON CONFLICT (client_id, day, metric, key) \
                     DO UPDATE SET count = report_daily.count + excluded.count",
                );
                insert.build().execute(&mut *tx).await?;
            }
            set_position!(tx, NAME, to);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The stored counts of `from..=to` (days, `YYYY-MM-DD`), of one client or all, and
    /// the position they were read at, in one read transaction so the two agree.
    pub async fn counts(
        &self,
        client: Option<&str>,
        from: &str,
        to: &str,
    ) -> anyhow::Result<(u64, Vec<DailyCount>)> {
        let sql = "SELECT client_id, day, metric, key, count FROM report_daily \
                   WHERE day >= $1 AND day <= $2 AND (CAST($3 AS TEXT) IS NULL OR client_id = $3) \
                   ORDER BY client_id, day, metric, key";
        // One snapshot for both reads (SQLite's read transactions are one already).
        let snapshot = match self.reader.db() {
            Db::Postgres(_) => "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            Db::Sqlite(_) => "SELECT 1",
        };
        let (position, rows): (Option<(i64,)>, Vec<Row>) = crate::on_pool!(self.reader.db(), p => {
            let mut tx = p.begin().await?;
            sqlx::query(snapshot).execute(&mut *tx).await?;
            let position = sqlx::query_as(
                "SELECT next_seq FROM projection_positions WHERE name = $1",
            )
            .bind(NAME)
            .fetch_optional(&mut *tx)
            .await?;
            let rows = sqlx::query_as(sql)
                .bind(from)
                .bind(to)
                .bind(client)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            (position, rows)
        });
        let counts = rows
            .into_iter()
            .filter_map(|(client_id, day, metric, key, count)| {
                Some(DailyCount {
                    client_id,
                    day,
                    metric: Metric::parse(&metric)?,
                    key,
                    count: count.max(0) as u64,
                })
            })
            .collect();
        Ok((position.map_or(0, |(n,)| n.max(0) as u64), counts))
    }
}
