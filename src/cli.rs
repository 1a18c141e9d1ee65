//! The `vidne` command line. Every setting is a flag, then an environment variable, then
//! a default; `vidne --help` and `vidne <command> --help` list them all.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::auth::store::{KeyError, KeyStore};
use crate::auth::Role;
use crate::db::{self, DatabaseUrl};
use crate::domain::values::Pepper;
use crate::http::{Application, ServeConfig};
use crate::ledger::Reader;
use crate::simulate;
use crate::token;
use crate::verify::{self, VerifyError};

#[derive(Parser, Debug)]
#[command(
    name = "vidne",
    version,
    about = "Vidne: the hash-chained audit ledger for eID brokers"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info,sqlx=warn`).
    #[arg(
        long,
        env = "VIDNE_LOG",
        default_value = "info,sqlx=warn",
        global = true
    )]
    pub log: String,
    /// Log format on stderr.
    #[arg(long, env = "VIDNE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArg {
    /// `sqlite://PATH` (embedded, the default) or `postgres://USER@HOST/DB`.
    #[arg(
        long = "database",
        env = "DATABASE_URL",
        default_value = "sqlite://vidne.db"
    )]
    pub url: DatabaseUrl,
}

/// How transaction tokens are sealed (`serve`, `projections rebuild`).
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The token signing key directory (0700; one 0600 file per key); required with
    /// PostgreSQL. Without it on SQLite: `<database file>.keys/`, made on first start.
    #[arg(long, env = "VIDNE_SIGNING_KEYS")]
    pub signing_keys: Option<std::path::PathBuf>,
    /// `iss` of every transaction token.
    #[arg(long, env = "VIDNE_ISSUER", default_value = "https://vidne.local")]
    pub issuer: String,
    /// The ledger's origin (SPEC section 5), named in every token's ledger binding; set
    /// once per deployment, never changed.
    #[arg(long, env = "VIDNE_ORIGIN", default_value = "vidne.local/ledger")]
    pub origin: String,
}

/// The verifiable log: its checkpoints and who may read it (`serve`).
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// The checkpoint key file (Ed25519, PKCS#8 PEM, 0600; made if missing), shared by
    /// every instance; required with PostgreSQL. Without it on SQLite:
    /// `<database file>.checkpoint-key`. Its verifier key is at `GET /v1/log/key`.
    #[arg(long, env = "VIDNE_CHECKPOINT_KEY")]
    pub checkpoint_key: Option<PathBuf>,
    /// Sign a checkpoint once this many records are past the last one...
    #[arg(long, env = "VIDNE_CHECKPOINT_EVERY", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// ...or once this long has passed since it (e.g. 10s, 2m), if any record is.
    #[arg(long, env = "VIDNE_CHECKPOINT_INTERVAL", default_value = "10s",
          value_parser = token::keys::parse_duration)]
    pub checkpoint_interval: std::time::Duration,
    /// Serve the log's read routes (records, checkpoints, key, proofs, tiles) without
    /// an API key; otherwise auditor and SP keys may read them.
    #[arg(long, env = "VIDNE_PUBLIC_LOG")]
    pub public_log: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Forget the transaction tokens and make them again from the whole ledger (same
    /// claims; signed with the keys current now). Stop the service first.
    Rebuild {
        #[command(flatten)]
        database: DatabaseArg,
        #[command(flatten)]
        tokens: TokenArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service (migrates the database first).
    Serve {
        #[command(flatten)]
        database: DatabaseArg,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "VIDNE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Connections in the read pool (the writer keeps one more of its own).
        #[arg(long, env = "VIDNE_READ_CONNECTIONS", default_value_t = 8)]
        read_connections: u32,
        /// Largest JSON request body, in bytes.
        #[arg(long, env = "VIDNE_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
        max_body_bytes: usize,
        /// The CPR pepper (SPEC section 6), at least 16 bytes; required with PostgreSQL.
        /// Without it on SQLite, one is made and kept in `<database file>.pepper` (0600).
        /// Prefer the environment variable: a flag shows in the process list.
        #[arg(long, env = "VIDNE_CPR_PEPPER", hide_env_values = true)]
        cpr_pepper: Option<String>,
        #[command(flatten)]
        tokens: TokenArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// The projections made from the ledger.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Apply the database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Recompute every record's canonical bytes, hash and chain link. Exits 1 naming the
    /// first bad seq, 2 if the ledger cannot be read.
    Verify {
        #[command(flatten)]
        database: DatabaseArg,
        /// First seq to check (its predecessor's hash is recomputed to check the link).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Last seq to check; without it, up to the chain head, which is checked too.
        #[arg(long)]
        to: Option<u64>,
        /// Print the result as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// The log's verifier key (or a file holding it): also check that the latest
        /// stored checkpoint is signed by it and that the records' Merkle tree has the
        /// root it signs. A ledger rewritten in the database, chain and all, fails this
        /// without the checkpoint key. Needs --from 0.
        #[arg(long)]
        key: Option<String>,
    },
    /// API keys and token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sealed transaction tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a compliance export (SPEC section 7): the records, a signed checkpoint, their
    /// inclusion proofs and a manifest signed by the checkpoint key; or verify one
    /// offline (`vidne export verify BUNDLE --key VKEY`). Contiguous unless a client or
    /// time filter is given.
    Export(crate::audit::cmd::ExportArgs),
    /// Verify Merkle proofs and signed checkpoints offline, with the verifier key alone.
    #[command(subcommand)]
    Proof(crate::logverify::cmd::ProofCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Drive a running service's HTTP API the way a busy broker would, from a seed: the
    /// same seed gives the same traffic.
    ///
    /// With the admin key it registers six SP clients (in CURRENT, PROD or both) and
    /// makes a key for each, a broker key and an auditor key; the two that FTN sessions
    /// use (and no others) register an encryption key made by the run, RSA-2048
    /// (RSA-OAEP-256) and EC P-256 (ECDH-ES+A256KW, signed ES256). With the broker key it
    /// then runs N sessions, session i on IdP i mod 8 (mitid, mitid_erhverv, nemid,
    /// bankid_no, bankid_mobile_no, buypass_no, bankid_se, ftn): logins, signings, CPR
    /// matches, PID lookups, Controlled Transfers, SSO reuse, completions, flow errors,
    /// logouts; and
    /// refused requests (a 4th CPR match, a reused and an unknown transfer code, bad html,
    /// a reference text of 131 characters, a signing without a signed request, a request
    /// after the logout), each at least once when N >= 8. Last, two IdP maintenance
    /// windows, one cancelled. Every write carries an Idempotency-Key made from the seed
    /// and is retried with it on connection errors and 503s. Then, for each client in
    /// each environment, the token of its first completed transaction is fetched with
    /// its SP key, decrypted, verified against the JWKS and its ledger binding checked:
    /// "tokens fetched N, verified N" in the summary.
    ///
    /// FILE is JSON: {"url", "clients": [{"client_id", "environment", "sp_key",
    /// "encryption"?: {"alg", "enc", "private_key_pem"}}],
    /// "transactions": [{"transaction_id", "session_id", "client_id", "idp", "actions":
    /// [{"action", "outcome", "error_description"?, "status"?}]}], "auditor_key",
    /// "refused": {"<error_description>": count}}. An action is start, start_with_login,
    /// login, sso_reuse, sign, cpr_match, pid_lookup, transfer_issue, transfer_exchange,
    /// complete, flow_error or logout (listed under the transaction started last); its
    /// outcome recorded, refused (with the error_description), failed (with the status)
    /// or skipped (after a failure in its session). Two runs of one seed differ only in
    /// the url and the keys (API keys and private keys). FILE holds keys: it is made
    /// readable by its owner only. No CPR number is ever written to it.
    ///
    /// Exits 0 when every answer was the planned one and every token checked verified,
    /// 1 naming the failures otherwise, 2 when the service cannot be reached, the admin
    /// key is refused, or the seed was simulated against this ledger already.
    Simulate {
        /// The service's base URL, http:// only: https is not supported, as this build's
        /// HTTP client has no TLS.
        #[arg(long, env = "VIDNE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An admin API key (`vidne keys create --role admin`). Prefer the environment
        /// variable: a flag shows in the process list.
        #[arg(long, env = "VIDNE_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
        /// Sessions to run (at least 8 to cover every IdP and every refusal).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        sessions: u64,
        /// Seed of the traffic: every id and choice derives from it.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write what was done (JSON).
        #[arg(long, default_value = "simulation.json")]
        out: PathBuf,
        /// Sessions in flight at once; each session's requests go in order.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make an API key and print it, alone, on stdout. Only its hash is stored: it cannot
    /// be shown again.
    Create {
        #[command(flatten)]
        database: DatabaseArg,
        /// admin, broker, auditor or sp:<client_id>.
        #[arg(long)]
        role: String,
        /// Who or what holds the key (shown in logs, never the key itself).
        #[arg(long)]
        name: String,
    },
    /// Add a token signing key: published in the JWKS at once, signing only after the
    /// publish lead; the key it replaces then stops signing and stays published. Prints
    /// the new kid and when it signs, never key material.
    RotateSigning(token::cmd::RotateArgs),
    /// List the token signing keys with their state (pending, active, retired).
    ListSigning(token::cmd::ListArgs),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Decrypt (if needed) and verify a token: alg allow-list, typ, kid, signature,
    /// claims, and its ledger binding against --database or --url. Exits 0 when valid and
    /// bound, 1 naming the failed check, 2 if inputs or the ledger cannot be read, 3 when
    /// valid but no ledger was given to check the binding.
    Verify(token::cmd::VerifyArgs),
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// What keeping the Merkle tree costs appends: N records from C appenders into a
    /// fresh database with the tree and into one without it, alternated for R rounds in
    /// one run, and the median ratio. The two scratch databases sit beside --database
    /// (`<file>.tree_on.db`, or `<database>_tree_on` on the same PostgreSQL server) and
    /// are removed afterwards.
    Tree {
        #[arg(long, env = "DATABASE_URL")]
        database: DatabaseUrl,
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 256)]
        appenders: u32,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Inclusion and consistency proof generation, p50 and p99 over S random proofs, in
    /// a ledger of N records (appended first through the real append path if --database
    /// holds fewer; kept for the next run), next to reading one tile of record hashes.
    Proofs {
        #[arg(long, env = "DATABASE_URL")]
        database: DatabaseUrl,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 2_000)]
        samples: u32,
    },
    /// Append N records from C concurrent appenders through the real append path, then
    /// the same rows as plain batched INSERTs into an unchained table, and print both
    /// rates, their ratio, and `vidne verify`'s rate over the ledger.
    Append {
        /// The database to write into; created if missing. Use a scratch database.
        #[arg(long, env = "DATABASE_URL")]
        database: DatabaseUrl,
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 256)]
        appenders: u32,
        /// Slices the records are appended in, each followed by its baseline, so that
        /// both sides meet the same machine (a shared one drifts over seconds).
        #[arg(long, default_value_t = 10)]
        rounds: u32,
    },
    /// Auditors' filtered queries (`GET /v1/audit/records` as the route asks the index)
    /// over a ledger of N broker-shaped records (appended first through the real append
    /// path if --database holds fewer; kept for the next run): the audit index's
    /// catch-up rate, then p50 and p99 of S queries per filter mix, each next to the
    /// baseline of the same run, one record read by `seq`.
    Audit {
        #[arg(long, env = "DATABASE_URL")]
        database: DatabaseUrl,
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
        #[arg(long, default_value_t = 500)]
        samples: u32,
    },
    /// Seal N transaction tokens of realistic claims (a MitID login, a signing, a CPR
    /// match) on one thread, signed EdDSA, signed ES256, and signed then encrypted to
    /// RSA-2048 and to P-256, next to raw ed25519-dalek signatures over messages of the
    /// same length measured in the same run (the baseline), with each ratio; then the
    /// token projection end to end on a scratch SQLite file (catch_up() over N completed
    /// transactions: read, fold, sign, store).
    Tokens {
        /// Tokens sealed in each case, and transactions the projection seals.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        tokens: u64,
    },
    /// Start the service in this process on 127.0.0.1 (a free port), register three SP
    /// clients (JWS, JWE to RSA, JWE to P-256), complete N transactions for each over
    /// HTTP, then load `GET /v1/transactions/{id}/token` with C keep-alive connections in
    /// closed loops, one client after the other, and last `GET /healthz` the same way:
    /// requests/s, p50 and p99 of each, and the ratios to /healthz.
    Fetch {
        /// The database to serve from; created if missing. Use a scratch database.
        #[arg(long, env = "DATABASE_URL")]
        database: DatabaseUrl,
        /// Concurrent connections of the load generator.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        connections: u64,
        /// Seconds of load per target, after a 1 s warm-up.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Completed transactions (tokens) per client; the fetches pick among them.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        tokens: u64,
    },
}

/// `vidne projections rebuild`: forgets the tokens, then seals them again from `seq` 0
/// with the keys current now. Returns the tokens sealed and the records read.
async fn rebuild_tokens(url: &DatabaseUrl, args: TokenArgs) -> anyhow::Result<(u64, u64)> {
    use crate::domain::token::TokenContext;
    use crate::projection::TokenProjection;
    use crate::token::{resolve_key_dir, KeySealer, SigningKeys};
    let db = db::open(url, "vidne-projections", 2).await?;
    let reader = Reader::new(db.clone());
    let clients = crate::http::registry::ClientsView::load(&reader).await?;
    let keys = SigningKeys::ensure(
        &resolve_key_dir(url, args.signing_keys)?,
        chrono::Utc::now(),
    )?;
    let sealer = KeySealer::new(keys, clients.clients());
    let context = TokenContext {
        issuer: args.issuer,
        origin: args.origin,
    };
    let projection = TokenProjection::new(db.clone(), reader.clone(), context, Arc::new(sealer));
    projection.reset().await?;
    let records = projection.catch_up().await?;
    let tokens = projection.count().await?;
    db.close().await;
    Ok((tokens, records))
}

/// Runs the parsed command; the `u8` is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve {
            database,
            listen,
            read_connections,
            max_body_bytes,
            cpr_pepper,
            tokens,
            log,
        } => {
            let cpr_pepper = cpr_pepper
                .map(|p| Pepper::new(p.into_bytes()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--cpr-pepper: {}", e.reason))?;
            let app = Application::build(ServeConfig {
                database: database.url.clone(),
                listen: listen.clone(),
                read_connections,
                max_body_bytes,
                cpr_pepper,
                signing_keys: tokens.signing_keys,
                issuer: tokens.issuer,
                origin: tokens.origin,
                checkpoint_key: log.checkpoint_key,
                checkpoints: crate::checkpoint::Policy {
                    every_records: log.checkpoint_every,
                    interval: log.checkpoint_interval,
                },
                public_log: log.public_log,
            })
            .await?;
            tracing::info!(database = %database.url, port = app.port(), "vidne serving on {listen}");
            app.run_until_stopped().await?;
            Ok(0)
        }
        Command::Projections(ProjectionsCommand::Rebuild { database, tokens }) => {
            let (tokens, records) = rebuild_tokens(&database.url, tokens).await?;
            println!("transaction tokens rebuilt: {tokens} tokens from {records} records");
            Ok(0)
        }
        Command::Migrate { database } => {
            db::create_if_missing(&database.url).await?;
            db::open(&database.url, "vidne-migrate", 1)
                .await?
                .close()
                .await;
            eprintln!("migrated {}", database.url);
            Ok(0)
        }
        Command::Verify {
            database,
            from,
            to,
            json,
            key,
        } => run_verify(&database.url, from, to, json, key.as_deref()).await,
        Command::Keys(KeysCommand::Create {
            database,
            role,
            name,
        }) => {
            let role =
                Role::parse(&role).map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.reason))?;
            let db = db::open(&database.url, "vidne-keys", 1).await?;
            let made = KeyStore::new(db.clone())
                .create(role, &name, chrono::Utc::now().timestamp_micros())
                .await
                .map_err(|e| match e {
                    KeyError::Invalid(f) => anyhow::anyhow!("--{}: {}", f.field, f.reason),
                    e => e.into(),
                })?;
            db.close().await;
            tracing::info!(key_id = %made.key_id, role = %made.role, "API key created");
            println!("{}", made.key.reveal());
            Ok(0)
        }
        Command::Keys(KeysCommand::RotateSigning(args)) => token::cmd::rotate_signing(&args),
        Command::Keys(KeysCommand::ListSigning(args)) => token::cmd::list_signing(&args),
        Command::Token(TokenCommand::Verify(args)) => Ok(token::cmd::verify_token(&args).await),
        Command::Proof(cmd) => Ok(crate::logverify::cmd::run(&cmd)),
        Command::Export(args) => crate::audit::cmd::run(args).await,
        Command::Bench(BenchCommand::Append {
            database,
            records,
            appenders,
            rounds,
        }) => {
            crate::bench::append(&database, records, appenders, rounds).await?;
            Ok(0)
        }
        Command::Bench(BenchCommand::Tree {
            database,
            records,
            appenders,
            rounds,
        }) => {
            crate::bench::tree::tree_cost(&database, records, appenders, rounds).await?;
            Ok(0)
        }
        Command::Bench(BenchCommand::Proofs {
            database,
            records,
            samples,
        }) => {
            crate::bench::tree::proofs(&database, records, samples).await?;
            Ok(0)
        }
        Command::Bench(BenchCommand::Audit {
            database,
            records,
            samples,
        }) => {
            crate::bench::audit::audit(&database, records, samples).await?;
            Ok(0)
        }
        Command::Bench(BenchCommand::Tokens { tokens }) => {
            crate::bench::tokens::tokens(tokens).await?;
            Ok(0)
        }
        Command::Bench(BenchCommand::Fetch {
            database,
            connections,
            seconds,
            tokens,
        }) => {
            let options = crate::bench::fetch::Options {
                connections: usize::try_from(connections)?,
                seconds,
                tokens,
            };
            crate::bench::fetch::fetch(&database, &options).await?;
            Ok(0)
        }
        Command::Simulate {
            url,
            admin_key,
            sessions,
            seed,
            out,
            concurrency,
        } => {
            let options = simulate::Options {
                url,
                admin_key,
                sessions: usize::try_from(sessions)?,
                seed,
                out,
                concurrency: usize::try_from(concurrency)?,
                progress: std::io::stderr().is_terminal(),
            };
            let summary = simulate::run(&options).await?;
            print!("{summary}");
            if summary.failure_count == 0 {
                return Ok(0);
            }
            eprintln!(
                "{} requests were not answered as planned; the first:",
                summary.failure_count
            );
            for f in &summary.failures {
                eprintln!("  {f}");
            }
            Ok(1)
        }
    }
}

/// The latest stored checkpoint, its signature checked with `key` (the verifier key or
/// a file holding it) by the independent verifier. The inner error says why it fails.
async fn signed_tree(
    reader: &Reader,
    key: &str,
) -> anyhow::Result<Result<verify::SignedTree, String>> {
    use crate::logverify::note;
    let text = match std::fs::read_to_string(key) {
        Ok(text) => text,
        Err(_) => key.to_owned(),
    };
    let key = note::VerifierKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let Some(latest) = reader.latest_checkpoint_note().await? else {
        return Ok(Err("the ledger holds no signed checkpoint to check".into()));
    };
    Ok(note::verify_checkpoint(&latest, &key)
        .map(|c| verify::SignedTree {
            tree_size: c.tree_size,
            root: c.root,
        })
        .map_err(|e| format!("the latest stored checkpoint: {e}")))
}

async fn run_verify(
    url: &DatabaseUrl,
    from: u64,
    to: Option<u64>,
    json: bool,
    key: Option<&str>,
) -> anyhow::Result<u8> {
    // Opens without migrating: verifying must not change the database it checks.
    let db = db::Db::connect(url, "vidne-verify", 2).await?;
    let reader = Reader::new(db.clone());
    let checkpoint = match key {
        None => None,
        Some(_) if from > 0 => {
            anyhow::bail!("--key checks the tree from the first record: use --from 0")
        }
        Some(key) => match signed_tree(&reader, key).await? {
            Ok(signed) => Some(signed),
            Err(reason) => {
                db.close().await;
                if json {
                    println!("{}", serde_json::json!({"ok": false, "reason": reason}));
                } else {
                    eprintln!("FAILED: {reason}");
                }
                return Ok(1);
            }
        },
    };
    let total = match to {
        Some(t) => t.saturating_sub(from) + 1,
        None => reader.head().await?.next_seq.saturating_sub(from),
    };
    let bar = if std::io::stderr().is_terminal() && !json {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let options = verify::Options {
        from,
        to,
        checkpoint,
        ..verify::Options::default()
    };
    let started = Instant::now();
    let result = verify::verify(&reader, &options, &mut |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    db.close().await;
    match result {
        Ok(report) => {
            let rate = report.records as f64 / secs.max(1e-9);
            if json {
                let mut v = serde_json::to_value(&report)?;
                v["ok"] = true.into();
                v["seconds"] = serde_json::json!((secs * 1000.0).round() / 1000.0);
                if let Some(c) = checkpoint {
                    v["checkpoint"] =
                        serde_json::json!({"tree_size": c.tree_size, "root": c.root.to_hex()});
                }
                println!("{v}");
            } else {
                if let Some(c) = checkpoint {
                    println!(
                        "ok: the latest checkpoint ({} records, root {}) verifies with the key \
                         and signs these records' Merkle tree",
                        c.tree_size, c.root
                    );
                }
                match report.to {
                    Some(last) => println!(
                        "ok: {} records verified (seq {}..={}), last hash {}, {:.0} records/s",
                        report.records,
                        report.from,
                        last,
                        report.last_hash.as_deref().unwrap_or("-"),
                        rate
                    ),
                    None => println!("ok: no records in range (seq {} onward)", report.from),
                }
            }
            Ok(0)
        }
        Err(VerifyError::Failed(f)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "seq": f.seq, "reason": f.reason})
                );
            } else {
                println!("FAILED at seq {}: {}", f.seq, f.reason);
            }
            Ok(1)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            } else {
                eprintln!("error: {e}");
            }
            Ok(2)
        }
    }
}
