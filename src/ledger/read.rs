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

    /// The file of a SQLite ledger, for [`SqliteRanges`]; `None` on PostgreSQL.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match &self.db {
            Db::Sqlite(p) => Some(p.connect_options().get_filename().to_owned()),
            Db::Postgres(_) => None,
        }
    }

    /// The signed note of the latest stored checkpoint, as stored (not checked here).
    pub async fn latest_checkpoint_note(&self) -> Result<Option<String>, sqlx::Error> {
        let sql = "SELECT note FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1";
        crate::on_pool!(&self.db, p => sqlx::query_scalar(sql).fetch_optional(p).await)
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
            Db::Postgres(p) => pg_copy_range(p, from, to, limit).await,
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
        let sql = format!("SELECT {COLUMNS} FROM ledger_records WHERE stream = $1 AND stream_seq > $2 ORDER BY stream_seq LIMIT $3");
        crate::on_pool!(&self.db, p => sqlx::query_as(&sql)
            .bind(stream)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
    }

    /// Up to `limit` records of type `event_type` with `after < seq <= to`, in `seq`
    /// order. (No index on the type: the `seq` range bounds the scan.)
    pub async fn of_type(
        &self,
        event_type: &str,
        after: Option<u64>,
        to: u64,
        limit: u32,
    ) -> Result<Vec<StoredRow>, sqlx::Error> {
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        let sql = format!("SELECT {COLUMNS} FROM ledger_records WHERE event_type = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4");
        crate::on_pool!(&self.db, p => sqlx::query_as(&sql)
            .bind(event_type)
            .bind(after)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
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

/// `seq` ranges of a SQLite ledger read through SQLite's own API (rusqlite, on the SQLite
/// library sqlx links), on a connection of their own that writes nothing, from a thread
/// that may block. For reading much of the ledger: sqlx copies each of a row's seven
/// values into an allocation of its own on its worker thread and hands every row across
/// threads, which was 5 of the 8 µs of CPU `vidne verify` spent on a record; read here,
/// the whole verification costs about 3.
pub struct SqliteRanges {
    conn: rusqlite::Connection,
}

impl SqliteRanges {
    pub fn open(file: &std::path::Path) -> Result<SqliteRanges, sqlx::Error> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sqlite_error)?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(sqlite_error)?;
        Ok(SqliteRanges { conn })
    }

    /// Up to `limit` rows with `from <= seq <= to`, in `seq` order, as [`Reader::range`].
    pub fn range(&mut self, from: u64, to: u64, limit: u32) -> Result<Vec<StoredRow>, sqlx::Error> {
        let to = to.min(from.saturating_add(u64::from(limit.max(1)) - 1));
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM ledger_records WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq"
            ))
            .map_err(sqlite_error)?;
        let bound = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut rows = statement
            .query((bound(from), bound(to)))
            .map_err(sqlite_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let bytes = |i: usize| match row.get_ref(i).map_err(sqlite_error)? {
                rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                    Ok(b.to_vec())
                }
                _ => Err(sqlx::Error::Protocol(format!(
                    "ledger_records column {i} is neither BLOB nor TEXT"
                ))),
            };
            let text = |i: usize| {
                String::from_utf8(bytes(i)?).map_err(|_| {
                    sqlx::Error::Protocol(format!("ledger_records column {i} is not UTF-8"))
                })
            };
            out.push(StoredRow {
                seq: row.get(0).map_err(sqlite_error)?,
                stream: text(1)?,
                stream_seq: row.get(2).map_err(sqlite_error)?,
                event_type: text(3)?,
                time_us: row.get(4).map_err(sqlite_error)?,
                canonical: bytes(5)?,
                hash: bytes(6)?,
            });
        }
        Ok(out)
    }
}

fn sqlite_error(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!("SQLite: {e}")))
}

/// A `seq` range from PostgreSQL through binary COPY: one byte stream parsed here, which
/// costs a fraction of decoding a row object per record (what bounds `vidne verify`).
async fn pg_copy_range(
    pool: &sqlx::PgPool,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    use futures::TryStreamExt;
    // Integers only, formatted here: COPY takes no bind parameters. `seq` is the primary
    // key, so the range holds at most `to - from + 1` rows and needs no LIMIT; and they
    // are put in order here, not by the server: without statistics (autovacuum off, or
    // not yet run) PostgreSQL reads such a range by bitmap and sorts it, and a chunk of
    // 10,000 records spilled that sort to disk (external merge, 6.4 MB a chunk).
    let sql = format!(
        "COPY (SELECT {COLUMNS} FROM ledger_records WHERE seq >= {from} AND seq <= {to}) \
         TO STDOUT (FORMAT binary)"
    );
    let mut tx = pool.begin().await?;
    // Nor in parallel: on a table of 10,000,000 rows the planner started two workers for
    // each chunk (32 ms for 10,000 rows, `vidne verify` at 216k records/s; 450k serial).
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
        .execute(&mut *tx)
        .await?;
    let mut bytes = Vec::new();
    let mut stream = tx.copy_out_raw(&sql).await?;
    while let Some(chunk) = stream.try_next().await? {
        bytes.extend_from_slice(&chunk);
    }
    drop(stream);
    tx.commit().await?;
    let mut rows = parse_copy_binary(&bytes)?;
    // Nearly always in order already (rows are appended in `seq` order): linear then.
    rows.sort_by_key(|r| r.seq);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows)
}

/// PostgreSQL's binary COPY format: a signature, flags, a header extension, then per
/// tuple a field count and each field's length and bytes, then a trailer of -1.
fn parse_copy_binary(bytes: &[u8]) -> Result<Vec<StoredRow>, sqlx::Error> {
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], sqlx::Error> {
            if self.0.len() < n {
                return Err(sqlx::Error::Protocol("truncated binary COPY data".into()));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn int<const N: usize>(&mut self) -> Result<[u8; N], sqlx::Error> {
            let b = self.take(N)?;
            b.try_into()
                .map_err(|_| sqlx::Error::Protocol("truncated binary COPY data".into()))
        }
        fn field(&mut self) -> Result<&'a [u8], sqlx::Error> {
            let len = i32::from_be_bytes(self.int()?);
            let len = usize::try_from(len)
                .map_err(|_| sqlx::Error::Protocol("NULL in ledger_records".into()))?;
            self.take(len)
        }
        fn i64(&mut self) -> Result<i64, sqlx::Error> {
            let b = self.field()?;
            Ok(i64::from_be_bytes(b.try_into().map_err(|_| {
                sqlx::Error::Protocol("bigint field is not 8 bytes".into())
            })?))
        }
        fn text(&mut self) -> Result<String, sqlx::Error> {
            String::from_utf8(self.field()?.to_vec())
                .map_err(|_| sqlx::Error::Protocol("text field is not UTF-8".into()))
        }
    }
    let mut c = Cursor(bytes);
    if c.take(11)? != b"PGCOPY\n\xff\r\n\0" {
        return Err(sqlx::Error::Protocol("not binary COPY data".into()));
    }
    let _flags = c.int::<4>()?;
    let extension = u32::from_be_bytes(c.int()?) as usize;
    c.take(extension)?;
    let mut rows = Vec::new();
    loop {
        match i16::from_be_bytes(c.int()?) {
            -1 => return Ok(rows),
            7 => rows.push(StoredRow {
                seq: c.i64()?,
                stream: c.text()?,
                stream_seq: c.i64()?,
                event_type: c.text()?,
                time_us: c.i64()?,
                canonical: c.field()?.to_vec(),
                hash: c.field()?.to_vec(),
            }),
            n => {
                return Err(sqlx::Error::Protocol(format!(
                    "binary COPY tuple has {n} fields, expected 7"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_copy_binary;

    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    fn copy_data(fields: i16) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&fields.to_be_bytes());
        field(&mut out, &7i64.to_be_bytes());
        field(&mut out, b"session:a");
        field(&mut out, &2i64.to_be_bytes());
        field(&mut out, b"login.completed");
        field(&mut out, &1_795_253_400_000_000i64.to_be_bytes());
        field(&mut out, b"{\"a\":1}");
        field(&mut out, &[9u8; 32]);
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn parses_binary_copy_rows() {
        let rows = parse_copy_binary(&copy_data(7)).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.seq, r.stream.as_str(), r.stream_seq),
            (7, "session:a", 2)
        );
        assert_eq!(
            (r.event_type.as_str(), r.time_us),
            ("login.completed", 1_795_253_400_000_000)
        );
        assert_eq!(
            (r.canonical.as_slice(), r.hash.as_slice()),
            (&b"{\"a\":1}"[..], &[9u8; 32][..])
        );
    }

    #[test]
    fn malformed_copy_data_is_an_error_not_a_panic() {
        let good = copy_data(7);
        for cut in 0..good.len() {
            assert!(
                parse_copy_binary(&good[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        assert!(parse_copy_binary(&copy_data(6)).is_err());
        let mut not_copy = good.clone();
        not_copy[0] = b'X';
        assert!(parse_copy_binary(&not_copy).is_err());
    }
}
