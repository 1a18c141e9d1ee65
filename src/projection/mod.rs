//! Projections: views made from the ledger by applying its records in `seq` order. Each
//! keeps the first `seq` it has not applied in `projection_positions`, updated in the same
//! database transaction as its view, so a crash loses nothing and applies nothing twice;
//! after a restart it catches up from there, and a rebuild starts again from `seq` 0.

pub mod audit;
pub mod reports;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use audit::AuditIndex;
pub use reports::Reports;
pub use tokens::{SealedToken, Sealer, StoredToken, TokenProjection};

/// The first `seq` projection `name` has not applied (0 before its first batch).
pub(crate) async fn position(db: &crate::db::Db, name: &str) -> anyhow::Result<u64> {
    let sql = "SELECT next_seq FROM projection_positions WHERE name = $1";
    let row: Option<(i64,)> =
        crate::on_pool!(db, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await?);
    Ok(row.map_or(0, |(n,)| n.max(0) as u64))
}

/// The batch after `from`, up to the ledger's head, if any record is past `from`.
pub(crate) async fn to_head(
    reader: &crate::ledger::Reader,
    from: u64,
) -> anyhow::Result<Option<u64>> {
    let head = reader.head().await?.next_seq;
    Ok((from < head).then_some(head))
}

/// In a batch's transaction: takes projection `$name`'s position row (the write locks the
/// row on PostgreSQL, the database on SQLite, until commit) and says whether the position
/// is still `$from` under that lock; `false` when another process applied the batch.
macro_rules! claim_position {
    ($tx:expr, $name:expr, $from:expr) => {{
        sqlx::query(
            "INSERT INTO projection_positions (name, next_seq) VALUES ($1, 0) \
             ON CONFLICT (name) DO UPDATE SET next_seq = projection_positions.next_seq",
        )
        .bind($name)
        .execute(&mut *$tx)
        .await?;
        let (now,): (i64,) =
            sqlx::query_as("SELECT next_seq FROM projection_positions WHERE name = $1")
                .bind($name)
                .fetch_one(&mut *$tx)
                .await?;
        now.max(0) as u64 == $from
    }};
}
pub(crate) use claim_position;

/// In a batch's transaction: moves projection `$name`'s position to `$to`.
macro_rules! set_position {
    ($tx:expr, $name:expr, $to:expr) => {
        sqlx::query("UPDATE projection_positions SET next_seq = $2 WHERE name = $1")
            .bind($name)
            .bind(i64::try_from($to)?)
            .execute(&mut *$tx)
            .await?
    };
}
pub(crate) use set_position;

/// What a projection's follower and its readers share: a nudge to look now rather than
/// at the next poll, and word that the projection advanced.
#[derive(Clone, Default)]
pub(crate) struct Signals {
    wake: Arc<Notify>,
    advanced: Arc<Notify>,
}

impl Signals {
    pub(crate) fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Waits for a nudge, or `max`.
    pub(crate) async fn idle(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }

    /// Applies batches until there is none: `next(position)` names where the batch from
    /// `position` ends, or `None`; `batch(from, to)` applies it. Returns the position.
    pub(crate) async fn catch_up<P, N, B, PF, NF, BF>(
        &self,
        position: P,
        next: N,
        batch: B,
    ) -> anyhow::Result<u64>
    where
        P: Fn() -> PF,
        PF: Future<Output = anyhow::Result<u64>>,
        N: Fn(u64) -> NF,
        NF: Future<Output = anyhow::Result<Option<u64>>>,
        B: Fn(u64, u64) -> BF,
        BF: Future<Output = anyhow::Result<()>>,
    {
        loop {
            let from = position().await?;
            let Some(to) = next(from).await? else {
                return Ok(from);
            };
            batch(from, to).await?;
            self.advanced.notify_waiters();
        }
    }

    /// Waits until `position()` reaches `seq`, or `timeout`; says whether it did.
    pub(crate) async fn wait_for<P, PF>(
        &self,
        seq: u64,
        timeout: Duration,
        position: P,
    ) -> anyhow::Result<bool>
    where
        P: Fn() -> PF,
        PF: Future<Output = anyhow::Result<u64>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let advanced = self.advanced.notified();
            if position().await? >= seq {
                return Ok(true);
            }
            self.nudge();
            if tokio::time::timeout_at(deadline, advanced).await.is_err() {
                return Ok(position().await? >= seq);
            }
        }
    }
}

/// Runs `catch_up` when nudged through `signals`, or every 250 ms, until the task is
/// dropped; a failure is logged and retried after a growing pause.
pub(crate) async fn follow<F, Fut>(what: &'static str, signals: Signals, catch_up: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match catch_up().await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::error!(error = %e, projection = what, "projection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        }
        signals.idle(Duration::from_millis(250)).await;
    }
}
