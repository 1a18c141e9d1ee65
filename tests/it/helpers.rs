//! Fresh databases for each test, and a macro that runs one test body on both backends.
//!
//! PostgreSQL is found at `VIDNE_TEST_PG` (default: the local server with trust auth).
//! If it cannot be reached the test fails: tests never skip silently.

use std::path::PathBuf;

use serde_json::json;
use vidne::db::{self, DatabaseUrl, Db};
use vidne::ledger::{Ledger, LedgerOptions, NewEvent, Reader};
use vidne::record::{Actor, Event, EventType, Payload, SchemaVersion, StreamId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn pg_admin_url() -> String {
    std::env::var("VIDNE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into())
}

fn pg_url(name: &str) -> String {
    let admin = pg_admin_url();
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// A database of its own, dropped (PostgreSQL) or deleted (SQLite) with the value.
pub struct TestDb {
    pub url: DatabaseUrl,
    pg_name: Option<String>,
    /// The SQLite file's directory, and the signing keys' (both backends).
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => {
                let name = format!("vidne_test_{}_{}", std::process::id(), rand_suffix());
                let url: DatabaseUrl = pg_url(&name).parse().unwrap();
                db::create_if_missing(&url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL must be running for the tests ({}): {e}",
                        pg_admin_url()
                    )
                });
                TestDb {
                    url,
                    pg_name: Some(name),
                    dir: tempfile::tempdir().unwrap(),
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path: PathBuf = dir.path().join("vidne.db");
                TestDb {
                    url: DatabaseUrl::Sqlite(path),
                    pg_name: None,
                    dir,
                }
            }
        }
    }

    /// The token signing key directory of a service on this database (made by its
    /// first start).
    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join("signing-keys")
    }

    /// The checkpoint key file of a service on this database (made by its first start).
    pub fn checkpoint_key(&self) -> PathBuf {
        self.dir.path().join("checkpoint-key")
    }

    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Postgres(s) => s.clone(),
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        }
    }

    /// A migrated pool of `max` connections.
    pub async fn pool(&self, max: u32) -> Db {
        db::open(&self.url, "vidne-test", max).await.unwrap()
    }

    /// A ledger (writer on a pool of its own, as a separate process would have) and a
    /// reader.
    pub async fn ledger_with(&self, options: LedgerOptions) -> (Ledger, Reader) {
        self.ledger_named("vidne-writer", options).await
    }

    /// A ledger whose writer connects as `application_name` (PostgreSQL).
    pub async fn ledger_named(
        &self,
        application_name: &str,
        options: LedgerOptions,
    ) -> (Ledger, Reader) {
        let reader = Reader::new(self.pool(4).await);
        let writer = Db::connect(&self.url, application_name, Ledger::CONNECTIONS)
            .await
            .unwrap();
        (Ledger::start(writer, options), reader)
    }

    pub async fn ledger(&self) -> (Ledger, Reader) {
        self.ledger_with(LedgerOptions::default()).await
    }

    /// Runs SQL as the table owner, bypassing nothing but what the SQL itself disables.
    pub async fn exec(&self, sql: &str) {
        use sqlx::Executor;
        match self.pool(1).await {
            Db::Postgres(p) => {
                p.execute(sql).await.unwrap();
                p.close().await;
            }
            Db::Sqlite(p) => {
                p.execute(sql).await.unwrap();
                p.close().await;
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = pg_admin_url();
            // Drop runs outside any async context we may block, so use a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// An event on `stream` claiming `stream_seq`, with a small payload.
pub fn event(stream: &str, stream_seq: u64) -> NewEvent {
    NewEvent {
        stream_seq,
        event: Event {
            stream: StreamId::parse(stream).unwrap(),
            event_type: EventType::parse("login.completed").unwrap(),
            version: SchemaVersion::parse(1).unwrap(),
            actor: Actor::parse("broker:neb-test-1").unwrap(),
            data: Payload::parse(&json!({"idp": "mitid", "n": stream_seq, "text": "blåbærgrød"}))
                .unwrap(),
        },
    }
}

/// Appends `n` single-event records on stream `session:s<i>`, one per stream.
pub async fn fill(ledger: &Ledger, n: u64) {
    for i in 0..n {
        ledger
            .append(vec![event(&format!("session:s{i}"), 1)])
            .await
            .unwrap();
    }
}

/// Appends `n` records on streams `session:<prefix><i>` of their own, 100 per append.
pub async fn append_more(ledger: &Ledger, prefix: &str, n: u64) {
    let all: Vec<u64> = (0..n).collect();
    for batch in all.chunks(100) {
        let events = batch
            .iter()
            .map(|i| event(&format!("session:{prefix}{i}"), 1))
            .collect();
        ledger.append(events).await.unwrap();
    }
}

/// Terminates every server process of `application_name` on the test's database, as a
/// restart or an administrator would.
pub async fn kill_backends(pool: &sqlx::PgPool, application_name: &str) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(application_name)
    .execute(pool)
    .await
    .unwrap();
}

/// `iss` and ledger origin of the services the tests start.
pub const TEST_ISSUER: &str = "https://broker.test";
pub const TEST_ORIGIN: &str = "vidne.test/ledger";

/// The CPR pepper of the services the tests start.
pub const TEST_PEPPER: &[u8] = b"vidne-test-pepper-0123456789abcdef";

/// The service on `db`, on a free port: its base URL and a handle that stops it.
pub async fn spawn_app(db: &TestDb) -> (String, actix_web::dev::ServerHandle) {
    spawn_app_with(db, |_| {}).await
}

/// [`spawn_app`] with its configuration changed by `tweak` first.
pub async fn spawn_app_with(
    db: &TestDb,
    tweak: impl FnOnce(&mut vidne::http::ServeConfig),
) -> (String, actix_web::dev::ServerHandle) {
    let mut config = vidne::http::ServeConfig {
        database: db.url.clone(),
        listen: "127.0.0.1:0".into(),
        read_connections: 2,
        max_body_bytes: 64 * 1024,
        cpr_pepper: Some(vidne::domain::values::Pepper::new(TEST_PEPPER).unwrap()),
        signing_keys: Some(db.key_dir()),
        issuer: TEST_ISSUER.into(),
        origin: TEST_ORIGIN.into(),
        checkpoint_key: Some(db.checkpoint_key()),
        checkpoints: Default::default(),
        public_log: false,
    };
    tweak(&mut config);
    let app = vidne::http::Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    (url, handle)
}

/// Runs `vidne` with `args`, returning (exit code, stdout, stderr).
pub fn vidne(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidne"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Generates `mod name { postgres, sqlite }` tests calling `name(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }
            }
        )*
    };
}
