//! Auditors' history queries over the audit index (`projection::audit`): records matching
//! an [`AuditFilter`], a page at a time, in `seq` order.
//!
//! Time bounds become `seq` bounds first: the ledger's record times never go back
//! (`chain::next` keeps them monotonic), so the first record at or after an instant is
//! found by binary search on the primary key, with no index on time. Every page is
//! bounded by the index's position: records not yet indexed are not searched, and the
//! answer says how far the index reaches (`indexed_through`).

pub mod cmd;
pub mod export;
pub mod report;

use crate::db::Db;
use crate::domain::audit::AuditFilter;
use crate::domain::values::{ClientId, Timestamp};
use crate::projection::AuditIndex;

/// One record found: its place, hash and canonical bytes.
pub struct Hit {
    pub seq: u64,
    pub hash: Vec<u8>,
    pub canonical: Vec<u8>,
}

/// One page of answers.
pub struct Page {
    pub hits: Vec<Hit>,
    /// The `seq` to continue from, if more records match below `end`.
    pub next: Option<u64>,
    /// Records below this `seq` were searched (the index's position, or the filter's end).
    pub indexed_through: u64,
}

/// What a search asks: the filter, the client every record must be attributed to (an
/// SP's own), where to start, and how many.
pub struct Search<'a> {
    pub filter: &'a AuditFilter,
    pub client: Option<&'a ClientId>,
    pub cursor: Option<u64>,
    pub limit: u32,
}

#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    index: AuditIndex,
}

impl AuditLog {
    pub fn new(db: Db, index: AuditIndex) -> AuditLog {
        AuditLog { db, index }
    }

    pub fn index(&self) -> &AuditIndex {
        &self.index
    }

    /// The `[start, end)` range of `seq`s a filter covers, within the index.
    pub async fn bounds(&self, filter: &AuditFilter) -> anyhow::Result<(u64, u64)> {
        let indexed = self.index.position().await?;
        let mut start = filter.from_seq.unwrap_or(0);
        let mut end = filter
            .to_seq
            .map_or(indexed, |to| to.saturating_add(1).min(indexed));
        if let Some(t) = filter.from_time {
            start = start.max(self.first_at(t, indexed).await?);
        }
        if let Some(t) = filter.to_time {
            end = end.min(self.first_at(t, indexed).await?);
        }
        Ok((start, end.max(start)))
    }

    /// The first `seq` below `end` whose record time is at or after `t` (`end` if none).
    async fn first_at(&self, t: Timestamp, end: u64) -> anyhow::Result<u64> {
        let (mut lo, mut hi) = (0u64, end);
        let sql = "SELECT time_us FROM ledger_records WHERE seq = $1";
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let time: Option<i64> = crate::on_pool!(&self.db, p =>
                sqlx::query_scalar(sql).bind(i64::try_from(mid)?).fetch_optional(p).await?);
            let time = time.ok_or_else(|| anyhow::anyhow!("ledger gap at seq {mid}"))?;
            if time < t.micros() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Whether `client` may read the record at `seq`: the audit index attributes it to
    /// the client, or one of the client's tokens binds it (an SSO reuse binds the
    /// session's earlier login, another SP's record). `None` while the index has not
    /// reached `seq` and no token binds it: not known yet.
    pub async fn may_read(&self, client: &ClientId, seq: u64) -> anyhow::Result<Option<bool>> {
        let at = i64::try_from(seq)?;
        let sql = "SELECT 1 FROM token_records WHERE client_id = $1 AND seq = $2 \
                   UNION ALL SELECT 1 FROM audit_clients WHERE client_id = $1 AND seq = $2";
        let row: Option<(i32,)> = crate::on_pool!(&self.db, p => sqlx::query_as(sql)
            .bind(client.as_str())
            .bind(at)
            .fetch_optional(p)
            .await?);
        if row.is_some() {
            return Ok(Some(true));
        }
        let indexed = self.index.position().await? > seq;
        Ok(indexed.then_some(false))
    }

    /// One page of the records `search` asks for.
    pub async fn search(&self, search: &Search<'_>) -> anyhow::Result<Page> {
        let (start, end) = self.bounds(search.filter).await?;
        let start = search.cursor.map_or(start, |c| c.max(start));
        let mut hits = self.matching(search, start, end, search.limit + 1).await?;
        let next = if hits.len() > search.limit as usize {
            hits.pop().map(|h| h.seq)
        } else {
            None
        };
        Ok(Page {
            hits,
            next,
            indexed_through: end,
        })
    }

    /// Up to `limit` matching records with `start <= seq < end`, in `seq` order.
    pub async fn matching(
        &self,
        search: &Search<'_>,
        start: u64,
        end: u64,
        limit: u32,
    ) -> anyhow::Result<Vec<Hit>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let f = search.filter;
        let clients: Vec<&ClientId> = match search.client {
            Some(own) => vec![own],
            None => f.client_ids.iter().collect(),
        };
        // The page's `seq`s from the index tables, then its records by `seq`. Joining
        // the ledger's table into the search instead let PostgreSQL merge-join it from
        // the cursor on: a client's page deep in the ledger took 233 ms at p99 at
        // 10,000,000 records, where this takes 35 (`vidne bench audit`). Several clients:
        // each client's first `limit` (its indexes answer each in `seq` order), merged;
        // a record of two of them is one hit.
        let seqs = match clients.as_slice() {
            [] => self.seqs_matching(f, None, start, end, limit).await?,
            [one] => self.seqs_matching(f, Some(one), start, end, limit).await?,
            several => {
                let mut seqs = Vec::new();
                for client in several {
                    let page = self.seqs_matching(f, Some(client), start, end, limit);
                    seqs.extend(page.await?);
                }
                seqs.sort_unstable();
                seqs.dedup();
                seqs.truncate(limit as usize);
                seqs
            }
        };
        self.records_at(&seqs).await
    }

    /// The records at `seqs` (ascending), in `seq` order.
    async fn records_at(&self, seqs: &[u64]) -> anyhow::Result<Vec<Hit>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = crate::on_pool!(&self.db, p => {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT seq, hash, canonical FROM ledger_records WHERE seq IN (",
            );
            let mut list = q.separated(", ");
            for seq in seqs {
                list.push_bind(i64::try_from(*seq)?);
            }
            q.push(") ORDER BY seq");
            q.build_query_as().persistent(false).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(Hit::from).collect())
    }

    /// The `seq`s of `matching` for one client, or none.
    async fn seqs_matching(
        &self,
        f: &AuditFilter,
        client: Option<&ClientId>,
        start: u64,
        end: u64,
        limit: u32,
    ) -> anyhow::Result<Vec<u64>> {
        let client = client.map(|c| c.to_string());
        // With a client, audit_clients drives: its indexes answer the client alone, with
        // a type or with an IdP, in `seq` order; audit_index is joined only for the
        // members it alone holds (each join costs a page read per record when cold).
        let person = [
            (
                "a.transaction_id",
                f.transaction_id.as_ref().map(|t| t.to_string()),
            ),
            (
                "a.subject_key",
                f.subject.as_ref().map(|s| s.as_str().to_owned()),
            ),
            (
                "a.cpr_ref",
                f.cpr_ref.as_ref().map(|c| c.as_str().to_owned()),
            ),
        ];
        let needs_index = client.is_none() || person.iter().any(|(_, v)| v.is_some());
        let d = if client.is_some() { "c" } else { "a" };
        // The ledger's table is joined only for a stream.
        let records = f.stream.is_some();
        let rows: Vec<(i64,)> = crate::on_pool!(&self.db, p => {
            let mut q = sqlx::QueryBuilder::new(format!("SELECT {d}.seq FROM "));
            match &client {
                Some(c) => {
                    q.push("audit_clients c");
                    if records {
                        q.push(" JOIN ledger_records r ON r.seq = c.seq");
                    }
                    if needs_index {
                        q.push(" JOIN audit_index a ON a.seq = c.seq");
                    }
                    q.push(" WHERE c.client_id = ").push_bind(c.clone());
                }
                None => {
                    q.push("audit_index a");
                    if records {
                        q.push(" JOIN ledger_records r ON r.seq = a.seq");
                    }
                    q.push(" WHERE 1 = 1");
                }
            }
            // The range is stated on every table joined: planners carry equalities
            // across a join, not ranges. Without it on `r` a merge join read the ledger
            // from `seq` 0 up to the range (2.7 s for a page at 5,000,000 on PostgreSQL),
            // and without it on `c` a page deep in a client's records read all before
            // it (450 ms).
            let (start, end) = (i64::try_from(start)?, i64::try_from(end)?);
            let mut tables = vec![d];
            if records {
                tables.push("r");
            }
            if needs_index && d != "a" {
                tables.push("a");
            }
            for t in tables {
                q.push(format_args!(" AND {t}.seq >= ")).push_bind(start);
                q.push(format_args!(" AND {t}.seq < ")).push_bind(end);
            }
            if let Some(s) = &f.stream {
                q.push(" AND r.stream = ").push_bind(s.to_string());
            }
            let (event_type, idp) = (format!("{d}.event_type"), format!("{d}.idp"));
            let kinds = [
                (event_type.as_str(), f.event_type.as_ref().map(|t| t.as_str().to_owned())),
                (idp.as_str(), f.idp.map(|i| i.as_str().to_owned())),
            ];
            for (column, value) in kinds.into_iter().chain(person) {
                if let Some(v) = value {
                    q.push(format_args!(" AND {column} = ")).push_bind(v);
                }
            }
            q.push(format_args!(" ORDER BY {d}.seq LIMIT ")).push_bind(i64::from(limit));
            // Not a prepared statement kept for reuse: PostgreSQL would soon plan it once
            // for any values, and a generic plan for `type = $ AND idp = $` walked the
            // whole index (seconds at 10,000,000 records) where the values' own plan
            // reads one index entry.
            q.build_query_as().persistent(false).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|(s,)| s.max(0) as u64).collect())
    }
}

impl From<(i64, Vec<u8>, Vec<u8>)> for Hit {
    fn from((seq, hash, canonical): (i64, Vec<u8>, Vec<u8>)) -> Hit {
        Hit {
            seq: seq.max(0) as u64,
            hash,
            canonical,
        }
    }
}
