//! Stored first answers for `Idempotency-Key` retries. A request claims its key with an
//! insert that does nothing if the key is taken, so two concurrent retries cannot both
//! run; the answer is stored when it is known.

use crate::db::Db;

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was free and is now this request's: run it, then `complete` or `release`.
    New,
    /// The first request with this key still runs (or ended without an answer).
    Running { fingerprint: Vec<u8> },
    /// The first request's answer.
    Done {
        fingerprint: Vec<u8>,
        status: u16,
        content_type: Option<String>,
        body: Option<Vec<u8>>,
    },
}

#[derive(Clone)]
pub struct IdempotencyStore {
    db: Db,
}

type Row = (Vec<u8>, Option<i32>, Option<String>, Option<Vec<u8>>);

impl IdempotencyStore {
    pub fn new(db: Db) -> IdempotencyStore {
        IdempotencyStore { db }
    }

    pub async fn claim(
        &self,
        scope: &[u8],
        key: &str,
        fingerprint: &[u8],
        now_us: i64,
    ) -> Result<Claim, sqlx::Error> {
        let insert = "INSERT INTO idempotency (scope, idem_key, fingerprint, created_us) \
                      VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let inserted = crate::on_pool!(&self.db, p => sqlx::query(insert)
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(now_us)
            .execute(p)
            .await?
            .rows_affected());
        if inserted == 1 {
            return Ok(Claim::New);
        }
        let select = "SELECT fingerprint, status, content_type, body FROM idempotency \
                      WHERE scope = $1 AND idem_key = $2";
        let (fingerprint, status, content_type, body): Row = crate::on_pool!(&self.db, p => sqlx::query_as(select)
            .bind(scope)
            .bind(key)
            .fetch_one(p)
            .await?);
        Ok(match status.and_then(|s| u16::try_from(s).ok()) {
            None => Claim::Running { fingerprint },
            Some(status) => Claim::Done {
                fingerprint,
                status,
                content_type,
                body,
            },
        })
    }

    /// Stores the first answer; `body` is `None` for answers that must not be kept.
    pub async fn complete(
        &self,
        scope: &[u8],
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(), sqlx::Error> {
        let sql = "UPDATE idempotency SET status = $3, content_type = $4, body = $5 \
                   WHERE scope = $1 AND idem_key = $2";
        crate::on_pool!(&self.db, p => sqlx::query(sql)
            .bind(scope)
            .bind(key)
            .bind(i32::from(status))
            .bind(content_type)
            .bind(body)
            .execute(p)
            .await
            .map(drop))
    }

    /// Frees a claim whose request ended without appending anything, for a retry to run.
    pub async fn release(&self, scope: &[u8], key: &str) -> Result<(), sqlx::Error> {
        let sql = "DELETE FROM idempotency WHERE scope = $1 AND idem_key = $2 AND status IS NULL";
        crate::on_pool!(&self.db, p => sqlx::query(sql)
            .bind(scope)
            .bind(key)
            .execute(p)
            .await
            .map(drop))
    }
}
