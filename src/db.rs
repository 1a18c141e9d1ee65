//! Which database, and connections to it. PostgreSQL in production, SQLite as the
//! embedded default; both hold the same tables (`migrations/postgres`, `migrations/sqlite`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// A parsed database URL: `postgres://…`/`postgresql://…`, or `sqlite://PATH`/`sqlite:PATH`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            PgConnectOptions::from_str(s).map_err(|_| "not a valid PostgreSQL URL".to_owned())?;
            return Ok(DatabaseUrl::Postgres(s.to_owned()));
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .ok_or("must start with postgres://, postgresql://, sqlite:// or sqlite:")?;
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err("sqlite URL names no file".to_owned());
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }
}

/// Shown without the password, so a URL can go into logs and errors.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(s) => {
                let Some((scheme, rest)) = s.split_once("://") else {
                    return f.write_str("postgres://…");
                };
                match rest.split_once('@') {
                    Some((userinfo, host)) => {
                        let user = userinfo.split(':').next().unwrap_or_default();
                        if userinfo.contains(':') {
                            write!(f, "{scheme}://{user}:***@{host}")
                        } else {
                            write!(f, "{scheme}://{user}@{host}")
                        }
                    }
                    None => write!(f, "{scheme}://{rest}"),
                }
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A pool on either backend.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs one sqlx expression on whichever pool `db` holds, bound to `$pool`: the same
/// query text and binds serve both backends where their SQL agrees.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot build the Merkle tree in {url}: {source}")]
    Tree { url: String, source: sqlx::Error },
}

impl Db {
    /// A pool of up to `max` connections, named `application_name` on PostgreSQL.
    /// SQLite files are created if missing and opened in WAL mode with
    /// `synchronous=FULL`, so a commit is on disk before it returns.
    pub async fn connect(
        url: &DatabaseUrl,
        application_name: &str,
        max: u32,
    ) -> Result<Db, DbError> {
        let err = |source| DbError::Connect {
            url: url.to_string(),
            source,
        };
        match url {
            DatabaseUrl::Postgres(s) => {
                let opts = PgConnectOptions::from_str(s)
                    .map_err(err)?
                    .application_name(application_name);
                let pool = PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(err)?;
                Ok(Db::Postgres(pool))
            }
            DatabaseUrl::Sqlite(path) => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    // Rows handed from sqlx's SQLite thread per wake-up: the default 50
                    // makes long range reads pay a thread hand-off every few rows.
                    .row_buffer_size(1024);
                let pool = SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(err)?;
                Ok(Db::Sqlite(pool))
            }
        }
    }

    /// Applies the backend's migrations (idempotent; concurrent callers are serialized
    /// by sqlx's migration lock).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
            Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
    }
}

/// Creates the database `url` names if it does not exist yet (PostgreSQL: `CREATE
/// DATABASE` through the server's maintenance database; SQLite: the file).
pub async fn create_if_missing(url: &DatabaseUrl) -> Result<(), sqlx::Error> {
    match url {
        DatabaseUrl::Postgres(s) => {
            if !sqlx::Postgres::database_exists(s).await? {
                sqlx::Postgres::create_database(s).await?;
            }
            Ok(())
        }
        // Connecting creates the file.
        DatabaseUrl::Sqlite(_) => Ok(()),
    }
}

/// Connects and migrates: what `serve`, `migrate` and `bench` do first.
pub async fn open(url: &DatabaseUrl, application_name: &str, max: u32) -> Result<Db, DbError> {
    let db = Db::connect(url, application_name, max).await?;
    db.migrate().await.map_err(|source| DbError::Migrate {
        url: url.to_string(),
        source,
    })?;
    let built = crate::merkle::store::build_missing(&db)
        .await
        .map_err(|source| DbError::Tree {
            url: url.to_string(),
            source,
        })?;
    if built > 0 {
        tracing::info!(
            records = built,
            "built the Merkle tree of records that predate it"
        );
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let u: DatabaseUrl = "postgres://vidne:s3cret@db.example:5432/ledger"
            .parse()
            .unwrap();
        assert_eq!(u.to_string(), "postgres://vidne:***@db.example:5432/ledger");
        assert!(!format!("{u:?}").contains("s3cret"));
        let u: DatabaseUrl = "sqlite://vidne.db".parse().unwrap();
        assert_eq!(u, DatabaseUrl::Sqlite("vidne.db".into()));
        let u: DatabaseUrl = "sqlite:/tmp/x.db?mode=rwc".parse().unwrap();
        assert_eq!(u, DatabaseUrl::Sqlite("/tmp/x.db".into()));
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }
}
