//! The read path: the chain head, records by `seq` range in bounded chunks (constant
//! memory whatever the range), by stream, and one by `seq`. Rows come back as stored, not
//! re-checked: `vidne verify` is what checks them.

use futures::stream::{self, Stream};
use sqlx::{FromRow, Row};

use super::chain::Head;
use crate::db::Db;
use crate::spec::hash::Hash32;

/// One row of `ledger_records`, exactly as the database holds it.
#[derive(Clone, Debug, FromRow)]
pub struct StoredRow {
    pub seq: i64,
    pub stream: String,
    pub stream_seq: i64,
    pub event_type: String,
    pub time_us: i64,
    /// The canonical bytes that were hashed, verbatim.
    pub canonical: Vec<u8>,
    pub hash: Vec<u8>,
}

impl StoredRow {
    pub fn hash32(&self) -> Option<Hash32> {
        Hash32::from_slice(&self.hash)
    }
}

const COLUMNS: &str = "seq, stream, stream_seq, event_type, time_us, canonical, hash";

/// Reads the ledger through a pool of its own, off the writer's connection.
#[derive(Clone, Debug)]
pub struct Reader {
    db: Db,
}

impl Reader {
    pub fn new(db: Db) -> Reader {
        Reader { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What `ledger_head` says: the next `seq` and the last record's hash and time.
    pub async fn head(&self) -> Result<Head, sqlx::Error> {
        let sql = "SELECT next_seq, last_hash, last_time_us FROM ledger_head WHERE id = 1";
        let (next, hash, time): (i64, Vec<u8>, i64) = match &self.db {
            Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await?,
            Db::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await?,
        };
        Ok(Head {
            next_seq: next.max(0) as u64,
            last_hash: Hash32::from_slice(&hash).ok_or_else(|| {
                sqlx::Error::Protocol("ledger_head.last_hash is not 32 bytes".into())
            })?,
            last_time_micros: time,
        })
    }

    /// Up to `limit` rows with `from <= seq <= to`, in `seq` order.
    pub async fn range(
        &self,
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, sqlx::Error> {
        // `seq` is gapless, so `limit` rows end at `from + limit - 1`. Bounding the range
        // there too keeps PostgreSQL on the primary-key index even before the table has
        // statistics (otherwise it may sort everything from `from` on, every chunk).
        // (On a tampered ledger with gaps a chunk may hold fewer rows; callers go on
        // from the last row they got.)
        let to = to.min(from.saturating_add(u64::from(limit.max(1)) - 1));
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        match &self.db {
            Db::Postgres(p) => {
                let sql = format!("SELECT {COLUMNS} FROM ledger_records WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3");
                sqlx::query_as(&sql)
                    .bind(from)
                    .bind(to)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await
            }
            Db::Sqlite(p) => {
                let sql = format!("SELECT {COLUMNS} FROM ledger_records WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3");
                sqlx::query_as(&sql)
                    .bind(from)
                    .bind(to)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await
            }
        }
    }

    /// Every row with `from <= seq <= to` as a stream of chunks of at most `chunk` rows;
    /// memory stays bounded by one chunk whatever the range.
    pub fn chunks(
        &self,
        from: u64,
        to: u64,
        chunk: u32,
    ) -> impl Stream<Item = Result<Vec<StoredRow>, sqlx::Error>> + '_ {
        stream::try_unfold(Some(from), move |next| async move {
            let Some(next) = next.filter(|n| *n <= to) else {
                return Ok(None);
            };
            let rows = self.range(next, to, chunk).await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let last = rows.last().map(|r| r.seq.max(0) as u64).unwrap_or(next);
            Ok(Some((rows, last.checked_add(1))))
        })
    }

    /// The records of `stream` with `stream_seq > after`, up to `limit`, in order.
    pub async fn stream(
        &self,
        stream: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, sqlx::Error> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        match &self.db {
            Db::Postgres(p) => {
                let sql = format!("SELECT {COLUMNS} FROM ledger_records WHERE stream = $1 AND stream_seq > $2 ORDER BY stream_seq LIMIT $3");
                sqlx::query_as(&sql)
                    .bind(stream)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await
            }
            Db::Sqlite(p) => {
                let sql = format!("SELECT {COLUMNS} FROM ledger_records WHERE stream = ?1 AND stream_seq > ?2 ORDER BY stream_seq LIMIT ?3");
                sqlx::query_as(&sql)
                    .bind(stream)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await
            }
        }
    }

    /// The row at `seq`, if there is one.
    pub async fn get(&self, seq: u64) -> Result<Option<StoredRow>, sqlx::Error> {
        Ok(self.range(seq, seq, 1).await?.into_iter().next())
    }

    /// Rows in the table, counted by the database (not from the head).
    pub async fn count(&self) -> Result<u64, sqlx::Error> {
        let sql = "SELECT count(*) FROM ledger_records";
        let row = match &self.db {
            Db::Postgres(p) => sqlx::query(sql).fetch_one(p).await?.try_get::<i64, _>(0)?,
            Db::Sqlite(p) => sqlx::query(sql).fetch_one(p).await?.try_get::<i64, _>(0)?,
        };
        Ok(row.max(0) as u64)
    }
}
