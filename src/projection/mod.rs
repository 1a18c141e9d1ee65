//! Projections: views made from the ledger by applying its records in `seq` order. Each
//! keeps the first `seq` it has not applied in `projection_positions`, updated in the same
//! database transaction as its view, so a crash loses nothing and applies nothing twice;
//! after a restart it catches up from there, and a rebuild starts again from `seq` 0.

pub mod audit;
pub mod tokens;

pub use audit::AuditIndex;
pub use tokens::{SealedToken, Sealer, StoredToken, TokenProjection};

/// The first `seq` projection `name` has not applied (0 before its first batch).
pub(crate) async fn position(db: &crate::db::Db, name: &str) -> anyhow::Result<u64> {
    let sql = "SELECT next_seq FROM projection_positions WHERE name = $1";
    let row: Option<(i64,)> =
        crate::on_pool!(db, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await?);
    Ok(row.map_or(0, |(n,)| n.max(0) as u64))
}
