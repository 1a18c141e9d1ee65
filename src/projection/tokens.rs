//! The transaction token projection: folds session records (and Controlled Transfer
//! exchanges) into [`SessionTokens`] and, when a transaction completes, signs its claims
//! and stores the token for its SP to fetch.
//!
//! Several processes on one PostgreSQL database may run it: each batch begins by
//! updating its position row, which the database locks until the batch commits, and
//! re-reads the position under that lock, so batches apply in order, once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{claim_position, set_position, Signals};
use crate::db::Db;
use crate::domain::session::SessionEvent;
use crate::domain::token::{RecordRef, SealedClaims, SessionTokens, TokenContext};
use crate::domain::transfer::TransferEvent;
use crate::domain::values::{ClientId, Environment, SessionId};
use crate::domain::LedgerEvent;
use crate::ledger::read::StoredRow;
use crate::ledger::Reader;

const NAME: &str = "transaction_tokens";
/// Records applied per database transaction.
const BATCH: u32 = 500;

/// A token as signed: compact JWS, and the key and algorithm that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedToken {
    pub jws: String,
    pub kid: String,
    pub alg: String,
}

/// Signs a transaction's claims for its SP, with the algorithm its registration in
/// `environment` asked for.
pub trait Sealer: Send + Sync {
    fn seal(
        &self,
        client_id: &ClientId,
        environment: Environment,
        claims: &Map<String, Value>,
    ) -> anyhow::Result<SealedToken>;
}

/// A stored token.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredToken {
    pub session_id: String,
    pub environment: Environment,
    pub completed_seq: u64,
    /// The claims as stored (JSON), left unparsed: a fetch serves the JWS alone.
    pub claims: String,
    pub jws: String,
    pub kid: String,
    pub alg: String,
}

#[derive(Clone)]
pub struct TokenProjection {
    /// Where batches write (reads go through the reader's pool).
    db: Db,
    reader: Reader,
    ctx: Arc<TokenContext>,
    sealer: Arc<dyn Sealer>,
    signals: Signals,
}

/// What one record means to this projection.
enum Applies {
    Session(SessionId, SessionEvent),
    Exchange(crate::domain::transfer::CodeExchanged),
    Nothing,
}

fn decode(row: &StoredRow) -> anyhow::Result<Applies> {
    let is_session = row.event_type.starts_with("session.");
    if !is_session && row.event_type != "transfer.code_exchanged" {
        return Ok(Applies::Nothing);
    }
    let record: Value = serde_json::from_slice(&row.canonical)?;
    let version = record["version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let data = record.get("data").cloned().unwrap_or(Value::Null);
    let bad = |e: crate::record::FieldError| {
        anyhow::anyhow!("record {}: {}: {}", row.seq, e.field, e.reason)
    };
    if is_session {
        let id = row.stream.strip_prefix("session:").ok_or_else(|| {
            anyhow::anyhow!("record {}: session event on {}", row.seq, row.stream)
        })?;
        let id = SessionId::parse(id).map_err(bad)?;
        let event = SessionEvent::from_record_parts(&row.event_type, version, data).map_err(bad)?;
        return Ok(Applies::Session(id, event));
    }
    match TransferEvent::from_record_parts(&row.event_type, version, data).map_err(bad)? {
        TransferEvent::CodeExchanged(e) => Ok(Applies::Exchange(e)),
        TransferEvent::CodeIssued(_) | TransferEvent::ExchangeRefused(_) => Ok(Applies::Nothing),
    }
}

fn record_ref(row: &StoredRow) -> RecordRef {
    RecordRef {
        seq: row.seq.max(0) as u64,
        hash: hex::encode(&row.hash),
    }
}

/// The session's state, from this batch's cache or the table (a macro: the batch's
/// transaction is of either backend).
macro_rules! load_state {
    ($sessions:expr, $tx:expr, $id:expr) => {{
        let id: &SessionId = $id;
        if !$sessions.contains_key(id) {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT state FROM token_sessions WHERE session_id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *$tx)
                    .await?;
            let state: SessionTokens = match row {
                Some((json,)) => serde_json::from_str(&json)?,
                None => SessionTokens::default(),
            };
            $sessions.insert(id.clone(), state);
        }
        $sessions
            .get_mut(id)
            .ok_or_else(|| anyhow::anyhow!("session state vanished"))?
    }};
}

macro_rules! store_token {
    ($tx:expr, $session_id:expr, $sealed:expr, $token:expr) => {{
        let sealed: &SealedClaims = $sealed;
        let token: &SealedToken = $token;
        let environment = sealed.environment.ok_or_else(|| {
            anyhow::anyhow!("transaction {} was never started", sealed.transaction_id)
        })?;
        sqlx::query(
            "INSERT INTO transaction_tokens \
             (client_id, transaction_id, session_id, environment, completed_seq, claims, jws, \
             kid, alg) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(sealed.client_id.as_str())
        .bind(sealed.transaction_id.as_str())
        .bind($session_id.as_str())
        .bind(environment.as_str())
        .bind(i64::try_from(sealed.completed_seq)?)
        .bind(Value::Object(sealed.claims.clone()).to_string())
        .bind(&token.jws)
        .bind(&token.kid)
        .bind(&token.alg)
        .execute(&mut *$tx)
        .await?;
        // What the token binds, so its SP may read those records (migration 0009).
        let bound = sealed
            .bound
            .iter()
            .map(|seq| i64::try_from(*seq))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in bound.chunks(500) {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO token_records (client_id, seq) ");
            insert.push_values(chunk, |mut b, seq| {
                b.push_bind(sealed.client_id.as_str()).push_bind(*seq);
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut *$tx).await?;
        }
    }};
}

impl TokenProjection {
    pub fn new(db: Db, reader: Reader, ctx: TokenContext, sealer: Arc<dyn Sealer>) -> Self {
        TokenProjection {
            db,
            reader,
            ctx: Arc::new(ctx),
            sealer,
            signals: Signals::default(),
        }
    }

    /// Says records were appended: the running projection looks now rather than at its
    /// next poll.
    pub fn nudge(&self) {
        self.signals.nudge();
    }

    /// Waits for a nudge, or `max`.
    pub async fn idle(&self, max: Duration) {
        self.signals.idle(max).await;
    }

    /// Applies every committed record after the stored position; returns the new
    /// position (the first `seq` not applied).
    pub async fn catch_up(&self) -> anyhow::Result<u64> {
        self.signals
            .catch_up(
                || self.position(),
                |from| super::to_head(&self.reader, from),
                |from, head| self.batch(from, head),
            )
            .await
    }

    /// Waits until the projection has applied every record below `seq`, or `timeout`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> anyhow::Result<bool> {
        self.signals
            .wait_for(seq, timeout, || self.position())
            .await
    }

    /// How many tokens are sealed.
    pub async fn count(&self) -> anyhow::Result<u64> {
        let sql = "SELECT count(*) FROM transaction_tokens";
        let (n,): (i64,) =
            crate::on_pool!(self.reader.db(), p => sqlx::query_as(sql).fetch_one(p).await?);
        Ok(n.max(0) as u64)
    }

    /// The first `seq` not yet applied.
    pub async fn position(&self) -> anyhow::Result<u64> {
        super::position(self.reader.db(), NAME).await
    }

    /// Forgets every token and the position, in one transaction; the next catch-up makes
    /// them again from `seq` 0.
    pub async fn reset(&self) -> anyhow::Result<()> {
        crate::on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            for sql in [
                "DELETE FROM transaction_tokens",
                "DELETE FROM token_records",
                "DELETE FROM token_sessions",
                "DELETE FROM projection_positions WHERE name = 'transaction_tokens'",
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The token of `transaction_id` for `client_id`: every one there is (a transaction
    /// id an SP reused in two sessions gives two).
    pub async fn tokens(
        &self,
        client_id: &ClientId,
        transaction_id: &str,
    ) -> anyhow::Result<Vec<StoredToken>> {
        let sql = "SELECT session_id, environment, completed_seq, claims, jws, kid, alg \
                   FROM transaction_tokens WHERE client_id = $1 AND transaction_id = $2 \
                   ORDER BY completed_seq";
        type Row = (String, String, i64, String, String, String, String);
        let rows: Vec<Row> = crate::on_pool!(self.reader.db(), p =>
            sqlx::query_as(sql).bind(client_id.as_str()).bind(transaction_id).fetch_all(p).await?);
        rows.into_iter()
            .map(|(session_id, environment, seq, claims, jws, kid, alg)| {
                Ok(StoredToken {
                    session_id,
                    environment: Environment::parse(&environment)
                        .map_err(|e| anyhow::anyhow!("stored environment: {}", e.reason))?,
                    completed_seq: seq.max(0) as u64,
                    claims,
                    jws,
                    kid,
                    alg,
                })
            })
            .collect()
    }

    /// Applies records from `from` (the position as just read; re-checked under the
    /// lock) up to `head` (at most [`BATCH`]) in one
    /// transaction with the view and the new position.
    async fn batch(&self, from: u64, head: u64) -> anyhow::Result<()> {
        // The records are read before the transaction: it holds the database's write
        // lock on SQLite, and must not wait for a read connection meanwhile.
        let rows = self.reader.range(from, head - 1, BATCH).await?;
        crate::on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            if !claim_position!(tx, NAME, from) {
                return Ok(()); // another process applied these meanwhile
            }
            let mut sessions: HashMap<SessionId, SessionTokens> = HashMap::new();
            let mut next = from;
            for row in &rows {
                let seq = row.seq.max(0) as u64;
                anyhow::ensure!(seq == next, "ledger gap: expected seq {next}, read {seq}");
                next = seq + 1;
                let (session_id, sealed) = match decode(row)? {
                    Applies::Nothing => continue,
                    Applies::Session(id, event) => {
                        let state = load_state!(sessions, tx, &id);
                        let sealed = state.apply(&id, record_ref(row), &event, &self.ctx);
                        (id, sealed)
                    }
                    Applies::Exchange(e) => {
                        let state = load_state!(sessions, tx, &e.session_id);
                        state.exchanged(record_ref(row), &e);
                        (e.session_id.clone(), None)
                    }
                };
                if let Some(sealed) = sealed {
                    let environment = sealed.environment.ok_or_else(|| {
                        anyhow::anyhow!("record {}: completes a transaction never started", row.seq)
                    })?;
                    let token = self.sealer.seal(&sealed.client_id, environment, &sealed.claims)?;
                    store_token!(tx, session_id, &sealed, &token);
                }
            }
            for (id, state) in &sessions {
                if state.is_idle() {
                    sqlx::query("DELETE FROM token_sessions WHERE session_id = $1")
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query(
                        "INSERT INTO token_sessions (session_id, state) VALUES ($1, $2) \
                         ON CONFLICT (session_id) DO UPDATE SET state = excluded.state",
                    )
                    .bind(id.as_str())
                    .bind(serde_json::to_string(state)?)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            set_position!(tx, NAME, next);
            tx.commit().await?;
        });
        Ok(())
    }
}
