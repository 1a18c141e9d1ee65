//! The CPR pepper (SPEC section 6): the deployment secret behind every `cpr_ref`, kept
//! outside the database. Given by `--cpr-pepper` / `VIDNE_CPR_PEPPER`; required on
//! PostgreSQL. On the embedded SQLite default without one, a random pepper is made once
//! and kept in `<database file>.pepper` (mode 0600) next to the database, so that the same
//! CPR keeps the same reference across restarts. Never logged.

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use crate::db::DatabaseUrl;
use crate::domain::values::Pepper;
use crate::secret_file;

/// The pepper to use for `database`, given `configured` (from the flag or environment).
pub fn resolve(database: &DatabaseUrl, configured: Option<Pepper>) -> anyhow::Result<Pepper> {
    if let Some(p) = configured {
        return Ok(p);
    }
    match database {
        DatabaseUrl::Postgres(_) => Err(anyhow::anyhow!(
            "--cpr-pepper (or VIDNE_CPR_PEPPER) is required with PostgreSQL: the pepper is a \
             deployment secret kept outside the database (at least 16 bytes, e.g. \
             `openssl rand -hex 32`)"
        )),
        DatabaseUrl::Sqlite(db) => from_file(&file_for(db)),
    }
}

/// Where the generated pepper of the SQLite database at `db` is kept.
pub fn file_for(db: &Path) -> PathBuf {
    secret_file::beside(db, ".pepper")
}

fn from_file(path: &Path) -> anyhow::Result<Pepper> {
    let text = secret_file::read_or_create(path, "CPR pepper", || {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Ok(hex::encode(bytes))
    })?;
    Pepper::new(text.into_bytes())
        .map_err(|e| anyhow::anyhow!("CPR pepper file {}: {}", path.display(), e.reason))
}
