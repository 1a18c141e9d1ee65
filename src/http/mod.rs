//! The actix-web service. [`Application::build`] connects, migrates, starts the ledger
//! writer and binds its own listener, so tests start it on port 0 and read the port back.

mod audit;
mod auth;
mod broker;
mod clients;
mod error;
mod health;
mod idempotency;
mod keys;
mod log;
mod maintenance;
mod openapi;
pub mod pepper;
pub mod registry;
mod reports;
mod sessions;
mod tokens;
mod trace;
mod transfers;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::app::Commands;
use crate::audit::AuditLog;
use crate::auth::store::KeyStore;
use crate::checkpoint::{self, Checkpointer, LogKey};
use crate::db::{self, DatabaseUrl, Db};
use crate::domain::session::SessionServices;
use crate::domain::token::TokenContext;
use crate::domain::values::{Pepper, Timestamp};
use crate::idempotency::IdempotencyStore;
use crate::ledger::{Ledger, LedgerOptions, Reader};
use crate::projection::{self, AuditIndex, Reports, TokenProjection};
use crate::token::{self, JwksCache, KeySealer, SigningKeys};

pub use error::ApiError;

/// What `vidne serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub database: DatabaseUrl,
    pub listen: String,
    /// Connections in the read pool (the writer has one of its own).
    pub read_connections: u32,
    /// Largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The CPR pepper; `None`: required on PostgreSQL, kept in a file next to an SQLite
    /// database (see [`pepper`]).
    pub cpr_pepper: Option<Pepper>,
    /// The token signing key directory; `None`: required on PostgreSQL, `<database
    /// file>.keys/` next to an SQLite database.
    pub signing_keys: Option<PathBuf>,
    /// `iss` of every transaction token.
    pub issuer: String,
    /// The ledger's origin (SPEC section 5), named in every token's binding.
    pub origin: String,
    /// The checkpoint key file; `None`: required on PostgreSQL,
    /// `<database file>.checkpoint-key` next to an SQLite database.
    pub checkpoint_key: Option<PathBuf>,
    /// When checkpoints are signed without being asked.
    pub checkpoints: checkpoint::Policy,
    /// Serve the log's read routes (records, checkpoints, proofs, tiles) without a key.
    pub public_log: bool,
}

/// The verifiable log's part of the state.
#[derive(Clone)]
pub struct LogState {
    pub checkpoints: Checkpointer,
    /// Whether the log's read routes need no key.
    pub public: bool,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub reader: Reader,
    pub ledger: Ledger,
    pub commands: Commands,
    pub keys: KeyStore,
    pub idempotency: IdempotencyStore,
    /// Key of the request fingerprints kept for `Idempotency-Key`, derived from the
    /// pepper: a stored fingerprint reveals nothing of a request that held a CPR.
    pub fingerprint_key: Arc<[u8; 32]>,
    /// The registered SP clients, as `client.registered` records say.
    pub clients: Arc<registry::ClientsView>,
    /// What sessions need: the CPR pepper and the client registry.
    pub sessions: SessionServices,
    /// The sealed transaction tokens.
    pub tokens: TokenProjection,
    /// The signing keys (for the JWKS).
    pub sealer: KeySealer,
    /// Clients' JWKS documents, for those registered with a JWKS URL.
    pub jwks: Arc<JwksCache>,
    pub log: LogState,
    /// Auditors' queries over the audit index.
    pub audit: AuditLog,
    /// Compliance reports' counts.
    pub reports: Reports,
}

impl AppState {
    /// The edge's clock: read here, passed into commands, never read by the domain.
    pub fn now_micros(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }

    pub fn now(&self) -> Result<Timestamp, ApiError> {
        Timestamp::from_micros(self.now_micros())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("clock: {}", e.reason)))
    }
}

pub struct Application {
    port: u16,
    server: Server,
    ledger: Ledger,
    follower: tokio::task::JoinHandle<()>,
    checkpointer: tokio::task::JoinHandle<()>,
    indexer: tokio::task::JoinHandle<()>,
    pools: Vec<Db>,
}

/// Keeps the token projection up with the ledger: the client view first (a token is
/// sealed as its client's registration says), then the records; the signing keys are
/// re-read every minute, so a rotation takes effect without a restart.
async fn follow(
    tokens: TokenProjection,
    clients: Arc<registry::ClientsView>,
    reader: Reader,
    sealer: KeySealer,
) {
    let mut backoff = Duration::from_millis(100);
    let mut keys_read = Instant::now();
    loop {
        if keys_read.elapsed() > Duration::from_secs(60) {
            if let Err(e) = sealer.reload() {
                tracing::error!(error = %e, "signing keys: reload failed; keeping those loaded");
            }
            keys_read = Instant::now();
        }
        let caught_up = match clients.catch_up(&reader).await {
            Ok(()) => tokens.catch_up().await.map(drop),
            Err(e) => Err(e),
        };
        match caught_up {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::error!(error = %e, "token projection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        }
        tokens.idle(Duration::from_millis(500)).await;
    }
}

impl Application {
    pub async fn build(config: ServeConfig) -> anyhow::Result<Application> {
        let pepper = pepper::resolve(&config.database, config.cpr_pepper.clone())?;
        let read_db = db::open(&config.database, "vidne", config.read_connections.max(1)).await?;
        let write_db = Db::connect(&config.database, "vidne-writer", Ledger::CONNECTIONS).await?;
        let ledger = Ledger::start(write_db.clone(), LedgerOptions::default());
        let reader = Reader::new(read_db.clone());
        let fingerprint_key = pepper.derive_key("idempotency fingerprint");
        let clients = Arc::new(registry::ClientsView::load(&reader).await?);
        let key_dir = token::resolve_key_dir(&config.database, config.signing_keys.clone())?;
        let keys = SigningKeys::ensure(&key_dir, chrono::Utc::now())?;
        let sealer = KeySealer::new(keys, clients.clients());
        let context = TokenContext {
            issuer: config.issuer.clone(),
            origin: config.origin.clone(),
        };
        // The projection writes through a connection of its own, so that its batches
        // never wait on the request handlers' pool.
        let projection_db = Db::connect(&config.database, "vidne-projection", 1).await?;
        let tokens = TokenProjection::new(
            projection_db.clone(),
            reader.clone(),
            context,
            Arc::new(sealer.clone()),
        );
        let log_key = LogKey::load_or_create(
            &checkpoint::key::resolve_path(&config.database, config.checkpoint_key.clone())?,
            &config.origin,
        )?;
        let checkpoints = Checkpointer::open(read_db.clone(), log_key).await?;
        let checkpointer = tokio::spawn(checkpoints.clone().run(config.checkpoints));
        let follower = tokio::spawn(follow(
            tokens.clone(),
            clients.clone(),
            reader.clone(),
            sealer.clone(),
        ));
        // The audit index has a writer connection of its own too.
        let index_db = Db::connect(&config.database, "vidne-audit-index", 1).await?;
        // The compliance reports count what the index has attributed, so one task runs
        // both, through that connection.
        let index = AuditIndex::new(index_db.clone(), reader.clone());
        let reports = Reports::new(index_db.clone(), reader.clone(), index.clone());
        let indexer = tokio::spawn({
            let (index, reports) = (index.clone(), reports.clone());
            let signals = index.signals().clone();
            projection::follow("audit index and reports", signals, move || {
                let (index, reports) = (index.clone(), reports.clone());
                async move {
                    index.catch_up().await?;
                    reports.catch_up().await?;
                    Ok(())
                }
            })
        });
        let state = AppState {
            audit: AuditLog::new(read_db.clone(), index),
            reports,
            tokens,
            sealer,
            jwks: Arc::new(JwksCache::default()),
            log: LogState {
                checkpoints,
                public: config.public_log,
            },
            sessions: SessionServices {
                pepper,
                clients: clients.registry(),
            },
            clients,
            commands: Commands::new(ledger.clone(), reader.clone()),
            keys: KeyStore::new(read_db.clone()),
            idempotency: IdempotencyStore::new(read_db.clone()),
            fingerprint_key: Arc::new(fingerprint_key),
            reader,
            ledger: ledger.clone(),
        };
        let listener = TcpListener::bind(&config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let port = listener.local_addr()?.port();
        let max_body = config.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(idempotency::idempotency))
                .wrap(TracingLogger::<trace::PathOnly>::new())
                .app_data(web::Data::new(state.clone()))
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(error::json_error),
                )
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .configure(health::routes)
                .configure(keys::routes)
                .configure(clients::routes)
                .configure(sessions::routes)
                .configure(transfers::routes)
                .configure(maintenance::routes)
                .configure(log::routes)
                .configure(audit::routes)
                .configure(reports::routes)
                .configure(tokens::routes)
                .configure(openapi::routes)
                .default_service(web::to(error::not_found))
        })
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            ledger,
            follower,
            checkpointer,
            indexer,
            pools: vec![read_db, write_db, projection_db, index_db],
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM (or the server handle stops it), then lets the writer
    /// answer every queued append before the pools close.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.follower.abort();
        self.checkpointer.abort();
        self.indexer.abort();
        self.ledger.close().await;
        for pool in &self.pools {
            pool.close().await;
        }
        result
    }

    /// A handle that stops the server (tests, embedding).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}
