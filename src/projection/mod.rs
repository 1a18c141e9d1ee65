//! Projections: views made from the ledger by applying its records in `seq` order. Each
//! keeps the first `seq` it has not applied in `projection_positions`, updated in the same
//! database transaction as its view, so a crash loses nothing and applies nothing twice;
//! after a restart it catches up from there, and a rebuild starts again from `seq` 0.

pub mod audit;
pub mod tokens;

pub use audit::AuditIndex;
pub use tokens::{SealedToken, Sealer, StoredToken, TokenProjection};
