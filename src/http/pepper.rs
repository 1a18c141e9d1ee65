//! The CPR pepper (SPEC section 6): the deployment secret behind every `cpr_ref`, kept
//! outside the database. Given by `--cpr-pepper` / `VIDNE_CPR_PEPPER`; required on
//! PostgreSQL. On the embedded SQLite default without one, a random pepper is made once
//! and kept in `<database file>.pepper` (mode 0600) next to the database, so that the same
//! CPR keeps the same reference across restarts. Never logged.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use crate::db::DatabaseUrl;
use crate::domain::values::Pepper;

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
    let mut name = db.as_os_str().to_owned();
    name.push(".pepper");
    PathBuf::from(name)
}

fn from_file(path: &Path) -> anyhow::Result<Pepper> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            let mut bytes = [0u8; 32];
            OsRng.fill_bytes(&mut bytes);
            let text = hex::encode(bytes);
            f.write_all(format!("{text}\n").as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "made a new CPR pepper file");
            Ok(Pepper::new(text.into_bytes()).expect("64 bytes"))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
                        "the CPR pepper file is readable by others; chmod 600 it");
                }
            }
            let mut text = String::new();
            std::fs::File::open(path)?.read_to_string(&mut text)?;
            Pepper::new(text.trim().as_bytes().to_vec())
                .map_err(|e| anyhow::anyhow!("CPR pepper file {}: {}", path.display(), e.reason))
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot make the CPR pepper file {}: {e}",
            path.display()
        )),
    }
}
