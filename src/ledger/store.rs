//! The writer's database operations, one implementation per backend. The order in which
//! they are called, and what is decided between them, lives in `write.rs`.

use std::collections::HashMap;
use std::future::Future;

use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgPool, Postgres, QueryBuilder, Row, Sqlite, SqlitePool};

use super::chain::Head;
use crate::merkle::{Frontier, TileHash};
use crate::record::{Record, StreamId};
use crate::spec::hash::Hash32;

/// The tree's part of a group: its right edge after the group's records, and the tile
/// hashes they complete. `None` leaves the tree alone (the append benchmark's baseline).
pub(super) struct TreeUpdate {
    pub frontier: Frontier,
    pub tiles: Vec<TileHash>,
}

/// A database the writer can append to. Every method runs on the writer's one
/// connection; `begin_and_lock` opens the transaction that `commit` ends.
pub(super) trait ChainStore: Clone + Send + Sync + 'static {
    type Conn: Send + 'static;

    /// Groups the writer may have in flight at once, each on a connection of its own:
    /// more than one only where a guarded write sent while another is in flight waits at
    /// the chain head's row lock and then checks the head the first one left.
    const PIPELINE: usize;

    /// Connections the pool may open (the writer uses at most [`Self::PIPELINE`]).
    fn max_connections(&self) -> usize;

    fn connect(&self) -> impl Future<Output = Result<Self::Conn, sqlx::Error>> + Send;

    /// Starts a transaction holding the chain-head lock and reads the head and the
    /// tree's right edge.
    fn begin_and_lock(
        conn: &mut Self::Conn,
    ) -> impl Future<Output = Result<(Head, Frontier), sqlx::Error>> + Send;

    /// The last `stream_seq` of each stream (0 for one with no record yet).
    fn stream_heads(
        conn: &mut Self::Conn,
        streams: &[&StreamId],
    ) -> impl Future<Output = Result<HashMap<StreamId, u64>, sqlx::Error>> + Send;

    /// Under the lock taken by `begin_and_lock`, which read `expected`: inserts the
    /// group's records and tile hashes and moves the chain head to `head`.
    fn insert(
        conn: &mut Self::Conn,
        expected: &Head,
        records: &[Record],
        head: &Head,
        tree: Option<&TreeUpdate>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    fn commit(conn: &mut Self::Conn) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The fast path, outside any transaction: atomically moves the head from `expected`
    /// to `head` and inserts `records` and the tile hashes, or, if the head is no longer
    /// `expected` (another process appended), writes nothing and returns `false`.
    /// Durable when it returns. `ahead`: the first `seq` of the group in flight ahead of
    /// this one (sealed on the head before `expected`), whose commit this one waits for.
    fn append_if_head(
        conn: &mut Self::Conn,
        expected: &Head,
        records: &[Record],
        head: &Head,
        tree: Option<&TreeUpdate>,
        ahead: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Closes a connection that failed mid-group instead of returning it to the pool,
    /// so its open transaction is rolled back by the server and never reused.
    fn discard(conn: Self::Conn) -> impl Future<Output = ()> + Send;
}

/// Where a write failed: before its commit was sent (nothing written), or with the
/// commit in flight (outcome unknown).
#[derive(Debug)]
pub(super) enum StoreError {
    Before(sqlx::Error),
    Commit(sqlx::Error),
}

/// The connection itself failed or was ended by the server (I/O error, SQLSTATE class 08
/// connection exception, 57P01-57P03 shutdown), as opposed to a statement refused.
pub(super) fn is_disconnect(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

fn head_from_row<R: Row>(row: &R) -> Result<(Head, Frontier), sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let unsigned = |column: usize, name: &str| -> Result<u64, sqlx::Error> {
        u64::try_from(row.try_get::<i64, _>(column)?)
            .map_err(|_| sqlx::Error::Protocol(format!("ledger_head.{name} is negative")))
    };
    let last_hash = Hash32::from_slice(row.try_get::<&[u8], _>(1)?)
        .ok_or_else(|| sqlx::Error::Protocol("ledger_head.last_hash is not 32 bytes".into()))?;
    let head = Head {
        next_seq: unsigned(0, "next_seq")?,
        last_hash,
        last_time_micros: row.try_get(2)?,
    };
    let tree = Frontier::from_bytes(unsigned(3, "tree_size")?, row.try_get::<&[u8], _>(4)?)
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    Ok((head, tree))
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

/// The advisory lock (an arbitrary key of Vidne's own) that guarded appends hold shared and
/// the locked path exclusively; see [`pg_guarded_append`].
const APPENDS_LOCK: i64 = 0x5669_646e_6548_6564; // "VidneHed"

/// The namespace of the advisory locks (two-key form, apart from [`APPENDS_LOCK`]'s) that
/// a guarded append holds on its first `seq` (modulo 2^31 - 1), so that the group sealed
/// after it can wait for its commit; see [`pg_guarded_append`].
const GROUP_LOCKS: i32 = 0x5664; // "Vd"

const SELECT_HEAD: &str = "SELECT next_seq, last_hash, last_time_us, tree_size, tree_frontier \
                           FROM ledger_head WHERE id = 1";

impl ChainStore for PgPool {
    type Conn = PoolConnection<Postgres>;

    const PIPELINE: usize = 2;

    fn max_connections(&self) -> usize {
        self.options().get_max_connections() as usize
    }

    async fn connect(&self) -> Result<Self::Conn, sqlx::Error> {
        self.acquire().await
    }

    async fn begin_and_lock(conn: &mut Self::Conn) -> Result<(Head, Frontier), sqlx::Error> {
        // First the appends lock exclusively: it waits for every guarded append under way
        // (which hold it shared) and holds back new ones, so none of them can wait for the
        // head while holding rows this transaction is about to insert.
        conn.execute(format!("BEGIN; SELECT pg_advisory_xact_lock({APPENDS_LOCK})").as_str())
            .await?;
        let row = sqlx::query(&format!("{SELECT_HEAD} FOR UPDATE"))
            .fetch_one(&mut **conn)
            .await?;
        head_from_row(&row)
    }

    async fn stream_heads(
        conn: &mut Self::Conn,
        streams: &[&StreamId],
    ) -> Result<HashMap<StreamId, u64>, sqlx::Error> {
        let names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT s.stream, (SELECT r.stream_seq FROM ledger_records r WHERE r.stream = s.stream \
             ORDER BY r.stream_seq DESC LIMIT 1) FROM unnest($1::text[]) AS s(stream)",
        )
        .bind(names)
        .fetch_all(&mut **conn)
        .await?;
        heads_from_rows(rows)
    }

    async fn insert(
        conn: &mut Self::Conn,
        expected: &Head,
        records: &[Record],
        head: &Head,
        tree: Option<&TreeUpdate>,
    ) -> Result<(), sqlx::Error> {
        // Under the lock the guard always holds; the same statement serves both paths.
        match pg_guarded_append(conn, expected, records, head, tree, None).await? {
            true => Ok(()),
            false => Err(sqlx::Error::Protocol(
                "ledger_head moved while locked".into(),
            )),
        }
    }

    async fn commit(conn: &mut Self::Conn) -> Result<(), sqlx::Error> {
        conn.execute("COMMIT").await.map(drop)
    }

    async fn append_if_head(
        conn: &mut Self::Conn,
        expected: &Head,
        records: &[Record],
        head: &Head,
        tree: Option<&TreeUpdate>,
        ahead: Option<u64>,
    ) -> Result<bool, StoreError> {
        pg_guarded_append(conn, expected, records, head, tree, ahead)
            .await
            .map_err(|e| match e {
                // The connection failed with the statement in flight: it may have committed.
                e if is_disconnect(&e) => StoreError::Commit(e),
                // The server refused the statement: it rolled back, nothing was written.
                e @ sqlx::Error::Database(_) => StoreError::Before(e),
                e => StoreError::Commit(e),
            })
    }

    async fn discard(conn: Self::Conn) {
        let _ = conn.close().await;
    }
}

/// Inserts `records` and the tile hashes and moves the head from `expected` to `head`, in
/// one statement (one round trip, atomic on its own in autocommit). `false`: the head was
/// not `expected` (another writer appended first); nothing was written.
///
/// It is written so that a group can be sent while the group ahead of it (sealed on the
/// head before, on another connection) is still committing, and do most of its work
/// meanwhile:
/// - it first takes [`APPENDS_LOCK`] shared, which other guarded appends do too but the
///   locked path takes exclusively before it locks the head: a transaction holding the
///   head for the locked path never waits on rows inserted here, so the two cannot
///   deadlock;
/// - it takes its group's lock in [`GROUP_LOCKS`] and inserts the records and tile
///   hashes (while the group ahead flushes its commit);
/// - it waits for the group ahead's lock, that is for its commit: without that wait it
///   could reach the head first, find it not yet moved, and have to go again;
/// - it updates the head last, which waits for the group ahead's commit, and decides the
///   guard on the row as that commit left it: in the SET, not the WHERE, because READ
///   COMMITTED re-checks a WHERE after such a wait only on a changed row, and skips
///   without waiting a row its snapshot saw in another state. If the head is not
///   `expected`, it sets `next_seq` to NULL, which the head's trigger refuses with 40001
///   (migration 0011), and the statement is rolled back with its rows.
///
/// The steps are chained by what each reads (`moved` needs `written` and `ahead`, `ahead`
/// needs `written`, the inserts need `held`), because PostgreSQL runs a WITH query when
/// it is first read: with the head moved before the group's lock was taken, a group gone
/// again after a race (below) and the group behind it each waited for the other (seen as
/// a deadlock, 1 s, in `vidne bench append`).
///
/// A duplicate `seq` or `(stream, stream_seq)` (23505), a deadlock (40P01) or 40001 all
/// mean that another writer appended first; each rolls everything back.
async fn pg_guarded_append(
    conn: &mut PoolConnection<Postgres>,
    expected: &Head,
    records: &[Record],
    head: &Head,
    tree: Option<&TreeUpdate>,
    ahead: Option<u64>,
) -> Result<bool, sqlx::Error> {
    let column = |f: fn(&Record) -> i64| records.iter().map(f).collect::<Vec<i64>>();
    let mut moves = vec![
        ("next_seq", "$1"),
        ("last_hash", "$2"),
        ("last_time_us", "$3"),
    ];
    if tree.is_some() {
        moves.extend([("tree_size", "$13"), ("tree_frontier", "$14")]);
    }
    let set = moves
        .iter()
        .map(|(column, value)| {
            // On another head, next_seq becomes NULL, which the head's trigger refuses
            // (40001, migration 0011): nothing of the group is kept.
            let otherwise = match *column {
                "next_seq" => "NULL",
                other => other,
            };
            format!(
                "{column} = CASE WHEN next_seq = $11 AND last_hash = $12 \
                 THEN {value} ELSE {otherwise} END"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let tiles = tree.map(|t| t.tiles.as_slice()).unwrap_or_default();
    let row = sqlx::query(&format!(
        "WITH held AS (SELECT pg_advisory_xact_lock_shared({APPENDS_LOCK}), \
         pg_advisory_xact_lock({GROUP_LOCKS}, ($11 % 2147483647)::int4)), \
         inserted AS (INSERT INTO ledger_records \
         (seq, stream, stream_seq, event_type, time_us, canonical, hash) \
         SELECT * FROM unnest($4::int8[], $5::text[], $6::int8[], $7::text[], $8::int8[], $9::bytea[], $10::bytea[]) \
         WHERE EXISTS (SELECT 1 FROM held) RETURNING 1), \
         tiles AS (INSERT INTO merkle_hashes (level, idx, hash) \
         SELECT * FROM unnest($15::int2[], $16::int8[], $17::bytea[]) \
         WHERE EXISTS (SELECT 1 FROM held) RETURNING 1), \
         written AS (SELECT (SELECT count(*) FROM inserted) AS records, (SELECT count(*) FROM tiles) AS tiles), \
         ahead AS (SELECT pg_advisory_xact_lock_shared({GROUP_LOCKS}, ($18 % 2147483647)::int4) \
         FROM written WHERE $18 >= 0), \
         moved AS (UPDATE ledger_head SET {set} WHERE id = 1 \
         AND (SELECT records + tiles FROM written) + (SELECT count(*) FROM ahead) >= 0 RETURNING 1) \
         SELECT (SELECT count(*) FROM moved), records, tiles FROM written"
    ))
    .bind(to_i64(head.next_seq))
    .bind(&head.last_hash.0[..])
    .bind(head.last_time_micros)
    .bind(column(|r| to_i64(r.seq())))
    .bind(records.iter().map(|r| r.stream().as_str()).collect::<Vec<_>>())
    .bind(column(|r| to_i64(r.stream_seq())))
    .bind(records.iter().map(|r| r.event_type().as_str()).collect::<Vec<_>>())
    .bind(column(Record::time_micros))
    .bind(records.iter().map(Record::canonical).collect::<Vec<_>>())
    .bind(records.iter().map(Record::hash_bytes).collect::<Vec<_>>())
    .bind(to_i64(expected.next_seq))
    .bind(&expected.last_hash.0[..])
    .bind(to_i64(tree.map_or(0, |t| t.frontier.size())))
    .bind(tree.map(|t| t.frontier.to_bytes()).unwrap_or_default())
    .bind(tiles.iter().map(|t| t.level as i16).collect::<Vec<_>>())
    .bind(tiles.iter().map(|t| to_i64(t.index)).collect::<Vec<_>>())
    .bind(tiles.iter().map(|t| &t.hash.0[..]).collect::<Vec<_>>())
    .bind(ahead.map_or(-1, to_i64))
    .fetch_one(&mut **conn)
    .await;
    let row = match row {
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("40001" | "40P01" | "23505")) =>
        {
            return Ok(false)
        }
        row => row?,
    };
    let moved: i64 = row.try_get(0)?;
    let inserted: i64 = row.try_get(1)?;
    let tiled: i64 = row.try_get(2)?;
    match (moved, usize::try_from(inserted), usize::try_from(tiled)) {
        (1, Ok(n), Ok(t)) if n == records.len() && t == tiles.len() => Ok(true),
        _ => Err(sqlx::Error::Protocol(format!(
            "guarded append moved {moved} head rows and inserted {inserted} of {} records \
             and {tiled} of {} tile hashes",
            records.len(),
            tiles.len()
        ))),
    }
}

/// Rows per multi-row INSERT on SQLite: 7 parameters each stays far below its limit of
/// 32766, and at most 100 statement shapes fit sqlx's statement cache.
const SQLITE_ROWS_PER_INSERT: usize = 100;

impl ChainStore for SqlitePool {
    type Conn = PoolConnection<Sqlite>;

    /// SQLite has one writer at a time, and a second would wait for it by polling.
    const PIPELINE: usize = 1;

    fn max_connections(&self) -> usize {
        self.options().get_max_connections() as usize
    }

    async fn connect(&self) -> Result<Self::Conn, sqlx::Error> {
        self.acquire().await
    }

    async fn begin_and_lock(conn: &mut Self::Conn) -> Result<(Head, Frontier), sqlx::Error> {
        // IMMEDIATE takes the database's write lock now, so another process cannot
        // append between our reading the head and our commit.
        conn.execute("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(SELECT_HEAD).fetch_one(&mut **conn).await?;
        head_from_row(&row)
    }

    async fn stream_heads(
        conn: &mut Self::Conn,
        streams: &[&StreamId],
    ) -> Result<HashMap<StreamId, u64>, sqlx::Error> {
        let names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
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

    async fn insert(
        conn: &mut Self::Conn,
        _expected: &Head,
        records: &[Record],
        head: &Head,
        tree: Option<&TreeUpdate>,
    ) -> Result<(), sqlx::Error> {
        sqlite_insert_rows(conn, records, tree).await?;
        sqlite_move_head(conn, head, tree, None).await?;
        Ok(())
    }

    async fn commit(conn: &mut Self::Conn) -> Result<(), sqlx::Error> {
        conn.execute("COMMIT").await.map(drop)
    }

    async fn append_if_head(
        conn: &mut Self::Conn,
        expected: &Head,
        records: &[Record],
        head: &Head,
        tree: Option<&TreeUpdate>,
        _ahead: Option<u64>,
    ) -> Result<bool, StoreError> {
        conn.execute("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::Before)?;
        let moved = sqlite_move_head(conn, head, tree, Some(expected))
            .await
            .map_err(StoreError::Before)?;
        if moved == 0 {
            conn.execute("ROLLBACK").await.map_err(StoreError::Before)?;
            return Ok(false);
        }
        sqlite_insert_rows(conn, records, tree)
            .await
            .map_err(StoreError::Before)?;
        conn.execute("COMMIT").await.map_err(StoreError::Commit)?;
        Ok(true)
    }

    async fn discard(conn: Self::Conn) {
        let _ = conn.close().await;
    }
}

/// Moves the head (and the tree with it, if given); with `expected`, only from there.
/// Returns the rows changed: 0 when the guard did not hold.
async fn sqlite_move_head(
    conn: &mut PoolConnection<Sqlite>,
    head: &Head,
    tree: Option<&TreeUpdate>,
    expected: Option<&Head>,
) -> Result<u64, sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new("UPDATE ledger_head SET next_seq = ");
    q.push_bind(to_i64(head.next_seq))
        .push(", last_hash = ")
        .push_bind(&head.last_hash.0[..])
        .push(", last_time_us = ")
        .push_bind(head.last_time_micros);
    if let Some(tree) = tree {
        q.push(", tree_size = ")
            .push_bind(to_i64(tree.frontier.size()))
            .push(", tree_frontier = ")
            .push_bind(tree.frontier.to_bytes());
    }
    q.push(" WHERE id = 1");
    if let Some(expected) = expected {
        q.push(" AND next_seq = ")
            .push_bind(to_i64(expected.next_seq))
            .push(" AND last_hash = ")
            .push_bind(&expected.last_hash.0[..]);
    }
    Ok(q.build().execute(&mut **conn).await?.rows_affected())
}

async fn sqlite_insert_rows(
    conn: &mut PoolConnection<Sqlite>,
    records: &[Record],
    tree: Option<&TreeUpdate>,
) -> Result<(), sqlx::Error> {
    let tiles = tree.map(|t| t.tiles.as_slice()).unwrap_or_default();
    for chunk in tiles.chunks(SQLITE_ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO merkle_hashes (level, idx, hash) ");
        q.push_values(chunk, |mut b, t| {
            b.push_bind(i64::from(t.level))
                .push_bind(to_i64(t.index))
                .push_bind(&t.hash.0[..]);
        });
        q.build().execute(&mut **conn).await?;
    }
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
