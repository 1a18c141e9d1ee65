//! The tree in the database: tile hashes read for proofs and tiles, and the one-time
//! build of the tree for a ledger written before the tree existed.

use sqlx::{QueryBuilder, Row};

use super::proof::{ProofError, TileSource};
use super::{Frontier, TileHash};
use crate::db::Db;
use crate::spec::hash::Hash32;

/// The tree as stored in `db`: level 0 from `ledger_records.hash`, the levels above
/// from `merkle_hashes`.
#[derive(Clone, Debug)]
pub struct DbTiles {
    db: Db,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn storage(e: sqlx::Error) -> ProofError {
    ProofError::Storage(e.to_string())
}

impl DbTiles {
    pub fn new(db: Db) -> DbTiles {
        DbTiles { db }
    }

    /// Leaves the stored tree holds: every record committed so far (the writer moves
    /// `tree_size` with the chain head). Roots and proofs (`merkle::proof`) are asked
    /// for sizes up to this; callers check that once, with the size they read.
    pub async fn size(&self) -> Result<u64, sqlx::Error> {
        let sql = "SELECT tree_size FROM ledger_head WHERE id = 1";
        let size: i64 = crate::on_pool!(&self.db, p => sqlx::query_scalar(sql).fetch_one(p).await)?;
        Ok(size.max(0) as u64)
    }

    /// Up to `end - start` stored hashes of `level` from `start`, fewer where the tree
    /// ends: what a tile or a partial tile holds.
    pub async fn read(&self, level: u32, start: u64, end: u64) -> Result<Vec<Hash32>, sqlx::Error> {
        // The LIMIT keeps PostgreSQL's generic plan of these prepared statements on the
        // primary key: without it, on a large table, it plans a parallel bitmap scan and
        // a sort for every tile (seen at 10 million records: ~80 ms instead of ~1 ms).
        let limit = to_i64(end.saturating_sub(start));
        let rows: Vec<Vec<u8>> = if level == 0 {
            let sql = "SELECT hash FROM ledger_records WHERE seq >= $1 AND seq < $2 \
                       ORDER BY seq LIMIT $3";
            crate::on_pool!(&self.db, p => sqlx::query_scalar(sql)
                .bind(to_i64(start))
                .bind(to_i64(end))
                .bind(limit)
                .fetch_all(p)
                .await)?
        } else {
            let sql = "SELECT hash FROM merkle_hashes WHERE level = $1 AND idx >= $2 AND idx < $3 \
                       ORDER BY idx LIMIT $4";
            crate::on_pool!(&self.db, p => sqlx::query_scalar(sql)
                .bind(i16::try_from(level).unwrap_or(i16::MAX))
                .bind(to_i64(start))
                .bind(to_i64(end))
                .bind(limit)
                .fetch_all(p)
                .await)?
        };
        rows.iter()
            .map(|h| {
                Hash32::from_slice(h).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("level {level}: a hash is not 32 bytes"))
                })
            })
            .collect()
    }
}

impl TileSource for DbTiles {
    async fn hashes(&self, level: u32, start: u64, end: u64) -> Result<Vec<Hash32>, ProofError> {
        self.read(level, start, end).await.map_err(storage)
    }
}

/// Builds the tree of records the writer appended before the tree existed (a ledger
/// from before migration 0005), under the chain-head lock so no append interleaves.
/// Returns the leaves added; 0 when the tree already covers the chain.
pub async fn build_missing(db: &Db) -> Result<u64, sqlx::Error> {
    const CHUNK: u64 = 10_000;
    // Every start and command opens the database through here: look before locking.
    let sql = "SELECT next_seq, tree_size FROM ledger_head WHERE id = 1";
    let (next, size): (i64, i64) =
        crate::on_pool!(db, p => sqlx::query_as(sql).fetch_one(p).await)?;
    if size >= next {
        return Ok(0);
    }
    let postgres = matches!(db, Db::Postgres(_));
    crate::on_pool!(db, pool => {
        // A transaction guard: rolled back if anything below fails.
        let mut conn = pool.begin_with(if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
        let lock = if postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(&format!(
            "SELECT next_seq, tree_size, tree_frontier FROM ledger_head WHERE id = 1{lock}"
        ))
        .fetch_one(&mut *conn)
        .await?;
        let next: i64 = row.try_get(0)?;
        let size: i64 = row.try_get(1)?;
        let bytes: Vec<u8> = row.try_get(2)?;
        let mut frontier = Frontier::from_bytes(size.max(0) as u64, &bytes)
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let next = next.max(0) as u64;
        let added = next.saturating_sub(frontier.size());
        while frontier.size() < next {
            let from = frontier.size();
            let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT hash FROM ledger_records WHERE seq >= $1 AND seq < $2 ORDER BY seq LIMIT $3",
            )
            .bind(to_i64(from))
            .bind(to_i64(next.min(from + CHUNK)))
            .bind(to_i64(CHUNK))
            .fetch_all(&mut *conn)
            .await?;
            if hashes.is_empty() {
                return Err(sqlx::Error::Protocol(format!("no record at seq {from}")));
            }
            let mut tiles: Vec<TileHash> = Vec::new();
            for h in &hashes {
                let h = Hash32::from_slice(h)
                    .ok_or_else(|| sqlx::Error::Protocol("a record hash is not 32 bytes".into()))?;
                frontier.push(h, &mut tiles);
            }
            for chunk in tiles.chunks(100) {
                let mut q = QueryBuilder::new("INSERT INTO merkle_hashes (level, idx, hash) ");
                q.push_values(chunk, |mut b, t| {
                    b.push_bind(i16::try_from(t.level).unwrap_or(i16::MAX))
                        .push_bind(to_i64(t.index))
                        .push_bind(t.hash.0.to_vec());
                });
                q.build().execute(&mut *conn).await?;
            }
        }
        sqlx::query("UPDATE ledger_head SET tree_size = $1, tree_frontier = $2 WHERE id = 1")
            .bind(to_i64(frontier.size()))
            .bind(frontier.to_bytes())
            .execute(&mut *conn)
            .await?;
        conn.commit().await?;
        Ok(added)
    })
}
