//! Secrets the embedded default keeps in files beside its database (the CPR pepper, the
//! checkpoint key): made once with mode 0600, then read back on every start, so that a
//! restart keeps what was derived from them. Their contents are never logged.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// `<db><suffix>`: where the embedded default keeps a secret for the database at `db`.
pub fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The text in `path` (trimmed); if there is no such file, `make()`'s text, written there
/// first (create-new, 0600, synced). `what` names the secret in messages.
pub fn read_or_create(
    path: &Path,
    what: &str,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            let text = make()?;
            f.write_all(format!("{}\n", text.trim_end()).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "made a new {what} file");
            Ok(text.trim().to_owned())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
                        "the {what} file is readable by others; chmod 600 it");
                }
            }
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| {
                    anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display())
                })?;
            Ok(text.trim().to_owned())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot make the {what} file {}: {e}",
            path.display()
        )),
    }
}
