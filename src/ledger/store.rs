//! The writer's database operations, one implementation per backend. The order in which
//! they are called, and what is decided between them, lives in `write.rs`.

use std::collections::HashMap;
use std::future::Future;

use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgPool, Postgres, QueryBuilder, Row, Sqlite, SqlitePool};

use super::chain::Head;
use crate::record::{Record, StreamId};
use crate::spec::hash::Hash32;

/// A database the writer can append to. Every method runs on the writer's one
/// connection; `begin_and_lock` opens the transaction that `commit` ends.
pub(super) trait ChainStore: Clone + Send + Sync + 'static {
    type Conn: Send;

    fn connect(&self) -> impl Future<Output = Result<Self::Conn, sqlx::Error>> + Send;

    /// Starts a transaction holding the chain-head lock and reads the head.
    fn begin_and_lock(
        conn: &mut Self::Conn,
    ) -> impl Future<Output = Result<Head, sqlx::Error>> + Send;

    /// The last `stream_seq` of each stream (0 for one with no record yet).
    fn stream_heads(
        conn: &mut Self::Conn,
        streams: &[StreamId],
    ) -> impl Future<Output = Result<HashMap<StreamId, u64>, sqlx::Error>> + Send;

    fn insert(
        conn: &mut Self::Conn,
        records: &[Record],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    fn set_head(
        conn: &mut Self::Conn,
        head: &Head,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    fn commit(conn: &mut Self::Conn) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Closes a connection that failed mid-group instead of returning it to the pool,
    /// so its open transaction is rolled back by the server and never reused.
    fn discard(conn: Self::Conn) -> impl Future<Output = ()> + Send;
}

fn head_from_row(next_seq: i64, last_hash: &[u8], last_time_us: i64) -> Result<Head, sqlx::Error> {
    let last_hash = Hash32::from_slice(last_hash)
        .ok_or_else(|| sqlx::Error::Protocol("ledger_head.last_hash is not 32 bytes".into()))?;
    Ok(Head {
        next_seq: u64::try_from(next_seq)
            .map_err(|_| sqlx::Error::Protocol("ledger_head.next_seq is negative".into()))?,
        last_hash,
        last_time_micros: last_time_us,
    })
}

fn to_i64(n: u64) -> i64 {
    // Positions are at most 2^53 - 1 (checked by Record::new), so this never saturates.
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn heads_from_rows(
    rows: Vec<(String, Option<i64>)>,
) -> Result<HashMap<StreamId, u64>, sqlx::Error> {
    rows.into_iter()
        .map(|(stream, last)| {
            let stream =
                StreamId::parse(stream).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            Ok((stream, last.unwrap_or(0).max(0) as u64))
        })
        .collect()
}

const SELECT_HEAD: &str = "SELECT next_seq, last_hash, last_time_us FROM ledger_head WHERE id = 1";
const UPDATE_HEAD: &str =
    "UPDATE ledger_head SET next_seq = $1, last_hash = $2, last_time_us = $3 WHERE id = 1";

impl ChainStore for PgPool {
    type Conn = PoolConnection<Postgres>;

    async fn connect(&self) -> Result<Self::Conn, sqlx::Error> {
        self.acquire().await
    }

    async fn begin_and_lock(conn: &mut Self::Conn) -> Result<Head, sqlx::Error> {
        conn.execute("BEGIN").await?;
        let row = sqlx::query(&format!("{SELECT_HEAD} FOR UPDATE"))
            .fetch_one(&mut **conn)
            .await?;
        head_from_row(
            row.try_get(0)?,
            row.try_get::<&[u8], _>(1)?,
            row.try_get(2)?,
        )
    }

    async fn stream_heads(
        conn: &mut Self::Conn,
        streams: &[StreamId],
    ) -> Result<HashMap<StreamId, u64>, sqlx::Error> {
        let names: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT s.stream, (SELECT r.stream_seq FROM ledger_records r WHERE r.stream = s.stream \
             ORDER BY r.stream_seq DESC LIMIT 1) FROM unnest($1::text[]) AS s(stream)",
        )
        .bind(names)
        .fetch_all(&mut **conn)
        .await?;
        heads_from_rows(rows)
    }

    async fn insert(conn: &mut Self::Conn, records: &[Record]) -> Result<(), sqlx::Error> {
        let n = records.len();
        let (
            mut seq,
            mut stream,
            mut stream_seq,
            mut event_type,
            mut time_us,
            mut canonical,
            mut hash,
        ) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in records {
            seq.push(to_i64(r.seq()));
            stream.push(r.stream().as_str());
            stream_seq.push(to_i64(r.stream_seq()));
            event_type.push(r.event_type().as_str());
            time_us.push(r.time_micros());
            canonical.push(r.canonical());
            hash.push(r.hash_bytes());
        }
        sqlx::query(
            "INSERT INTO ledger_records (seq, stream, stream_seq, event_type, time_us, canonical, hash) \
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::bytea[], $7::bytea[])",
        )
        .bind(seq)
        .bind(stream)
        .bind(stream_seq)
        .bind(event_type)
        .bind(time_us)
        .bind(canonical)
        .bind(hash)
        .execute(&mut **conn)
        .await?;
        Ok(())
    }

    async fn set_head(conn: &mut Self::Conn, head: &Head) -> Result<(), sqlx::Error> {
        sqlx::query(UPDATE_HEAD)
            .bind(to_i64(head.next_seq))
            .bind(&head.last_hash.0[..])
            .bind(head.last_time_micros)
            .execute(&mut **conn)
            .await?;
        Ok(())
    }

    async fn commit(conn: &mut Self::Conn) -> Result<(), sqlx::Error> {
        conn.execute("COMMIT").await.map(drop)
    }

    async fn discard(conn: Self::Conn) {
        let _ = conn.close().await;
    }
}

/// Rows per multi-row INSERT on SQLite: 7 parameters each stays far below its limit of
/// 32766, and at most 100 statement shapes fit sqlx's statement cache.
const SQLITE_ROWS_PER_INSERT: usize = 100;

impl ChainStore for SqlitePool {
    type Conn = PoolConnection<Sqlite>;

    async fn connect(&self) -> Result<Self::Conn, sqlx::Error> {
        self.acquire().await
    }

    async fn begin_and_lock(conn: &mut Self::Conn) -> Result<Head, sqlx::Error> {
        // IMMEDIATE takes the database's write lock now, so another process cannot
        // append between our reading the head and our commit.
        conn.execute("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(SELECT_HEAD).fetch_one(&mut **conn).await?;
        head_from_row(
            row.try_get(0)?,
            row.try_get::<&[u8], _>(1)?,
            row.try_get(2)?,
        )
    }

    async fn stream_heads(
        conn: &mut Self::Conn,
        streams: &[StreamId],
    ) -> Result<HashMap<StreamId, u64>, sqlx::Error> {
        let names: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let json =
            serde_json::to_string(&names).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT j.value, (SELECT max(r.stream_seq) FROM ledger_records r WHERE r.stream = j.value) \
             FROM json_each(?1) AS j",
        )
        .bind(json)
        .fetch_all(&mut **conn)
        .await?;
        heads_from_rows(rows)
    }

    async fn insert(conn: &mut Self::Conn, records: &[Record]) -> Result<(), sqlx::Error> {
        for chunk in records.chunks(SQLITE_ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO ledger_records (seq, stream, stream_seq, event_type, time_us, canonical, hash) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(to_i64(r.seq()))
                    .push_bind(r.stream().as_str())
                    .push_bind(to_i64(r.stream_seq()))
                    .push_bind(r.event_type().as_str())
                    .push_bind(r.time_micros())
                    .push_bind(r.canonical())
                    .push_bind(r.hash_bytes());
            });
            q.build().execute(&mut **conn).await?;
        }
        Ok(())
    }

    async fn set_head(conn: &mut Self::Conn, head: &Head) -> Result<(), sqlx::Error> {
        sqlx::query(UPDATE_HEAD)
            .bind(to_i64(head.next_seq))
            .bind(&head.last_hash.0[..])
            .bind(head.last_time_micros)
            .execute(&mut **conn)
            .await?;
        Ok(())
    }

    async fn commit(conn: &mut Self::Conn) -> Result<(), sqlx::Error> {
        conn.execute("COMMIT").await.map(drop)
    }

    async fn discard(conn: Self::Conn) {
        let _ = conn.close().await;
    }
}
