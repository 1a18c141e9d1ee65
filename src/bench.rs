//! `vidne bench append`: the append path against a baseline measured in the same run;
//! `vidne bench tokens` ([`tokens`]) and `vidne bench fetch` ([`fetch`]): sealing and
//! fetching transaction tokens, each next to a baseline of the same run; `vidne bench
//! audit` ([`audit`]): auditors' filtered queries over a large ledger.
//!
//! The baseline writes the very canonical rows the ledger just stored into
//! `bench_baseline`, a table with the same columns and indexes but no chain: one
//! connection, one transaction per `appenders` rows (the largest group the ledger can
//! form), the same durability. The ratio is what chaining and group commit cost.

pub mod audit;
pub mod fetch;
mod load;
pub mod tokens;
pub mod tree;

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::TryStreamExt;
use serde_json::json;
use sqlx::{Executor, QueryBuilder, Sqlite};

use crate::db::{self, DatabaseUrl, Db};
use crate::ledger::{Ledger, LedgerOptions, NewEvent, Reader, StoredRow};
use crate::record::{Actor, Event, EventType, Payload, SchemaVersion, StreamId};
use crate::verify;

pub async fn append(
    url: &DatabaseUrl,
    records: u64,
    appenders: u32,
    rounds: u32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        records > 0 && appenders > 0 && rounds > 0,
        "--records, --appenders and --rounds must be at least 1"
    );
    db::create_if_missing(url).await?;
    let read_db = db::open(url, "vidne-bench", 4).await?;
    let reader = Reader::new(read_db.clone());
    let first_seq = reader.head().await?.next_seq;
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let events = bench_events(&run, records, appenders)?;
    let payload_bytes = events[0][0].event.data.canonical().len();
    println!(
        "vidne bench append ({} build): {url} ({}), {records} records, {appenders} appenders, {payload_bytes}-byte payloads, ledger at seq {first_seq}; {rounds} rounds, each appending a slice through the ledger, then the same rows into the baseline",
        build_kind(),
        transport(url)
    );
    baseline_table(&read_db).await?;
    let ledger = Ledger::start(
        Db::connect(url, "vidne-writer", Ledger::CONNECTIONS).await?,
        LedgerOptions::default(),
    );
    // Each appender's events, in `rounds` slices of consecutive ones.
    let mut slices: Vec<Vec<Vec<NewEvent>>> = (0..rounds).map(|_| Vec::new()).collect();
    for list in events {
        let per_round = list.len().div_ceil(rounds as usize).max(1);
        let mut chunks = list.chunks(per_round).map(<[NewEvent]>::to_vec);
        for round in slices.iter_mut() {
            round.push(chunks.next().unwrap_or_default());
        }
    }
    let (mut ledger_secs, mut baseline_secs) = (0.0, 0.0);
    let mut ratios = Vec::new();
    let mut next = first_seq;
    for slice in slices {
        let n: u64 = slice.iter().map(|l| l.len() as u64).sum();
        if n == 0 {
            continue;
        }
        let started = Instant::now();
        drive(&ledger, slice, 1).await?;
        let l = started.elapsed().as_secs_f64();
        let rows: Vec<StoredRow> = reader
            .chunks(next, next + n - 1, 10_000)
            .try_concat()
            .await?;
        anyhow::ensure!(
            rows.len() as u64 == n,
            "read back {} of {n} records",
            rows.len()
        );
        next += n;
        let b = baseline(&read_db, &rows, appenders as usize).await?;
        ledger_secs += l;
        baseline_secs += b;
        ratios.push(b / l);
    }
    let stats = ledger.stats();
    ledger.close().await;
    ratios.sort_by(f64::total_cmp);
    let ledger_rate = records as f64 / ledger_secs;
    let baseline_rate = records as f64 / baseline_secs;
    println!(
        "  ledger append (chained, group commit): {:>10.0} records/s  ({records} in {ledger_secs:.2} s; {} groups, mean {:.0} records)",
        ledger_rate,
        stats.groups,
        stats.records as f64 / stats.groups.max(1) as f64
    );
    println!(
        "  baseline (plain INSERT, unchained):    {:>10.0} records/s  ({records} in {baseline_secs:.2} s; {appenders} rows per transaction)",
        baseline_rate
    );
    println!(
        "  ratio ledger / baseline: {:.2}  (per round: lowest {:.2}, median {:.2}, highest {:.2})",
        ledger_rate / baseline_rate,
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
    // The floor under verify: SHA-256 alone over the same canonical bytes, on one core
    // (verify must hash every record at least once).
    let rows: Vec<StoredRow> = reader
        .chunks(first_seq, first_seq + records.min(100_000) - 1, 10_000)
        .try_concat()
        .await?;
    let started = Instant::now();
    let mut fold = 0u8;
    for r in &rows {
        fold ^= crate::spec::hash::record_hash(&r.canonical).0[0];
    }
    let sha_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(fold);
    let sha_rate = rows.len() as f64 / sha_secs;
    drop(rows);

    let started = Instant::now();
    let report = verify::verify(&reader, &verify::Options::default(), &mut |_| {}).await?;
    let verify_secs = started.elapsed().as_secs_f64();
    println!(
        "  vidne verify (whole ledger):           {:>10.0} records/s  ({} in {verify_secs:.2} s)",
        report.records as f64 / verify_secs,
        report.records
    );
    println!("  SHA-256 alone, one core (the floor):    {sha_rate:>10.0} records/s");
    read_db.close().await;
    Ok(())
}

/// Runs one task per list of `events`, each appending its events in order, `per_append`
/// at a time, and waits for all of them.
pub(crate) async fn drive(
    ledger: &Ledger,
    events: Vec<Vec<NewEvent>>,
    per_append: usize,
) -> anyhow::Result<()> {
    let tasks: Vec<_> = events
        .into_iter()
        .map(|stream| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut stream = stream.into_iter().peekable();
                while stream.peek().is_some() {
                    ledger
                        .append(stream.by_ref().take(per_append).collect())
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One list of events per appender, each on a stream of its own with consecutive
/// `stream_seq`s; a payload shaped like a MitID login event.
pub(crate) fn bench_events(
    run: &str,
    records: u64,
    appenders: u32,
) -> anyhow::Result<Vec<Vec<NewEvent>>> {
    let event_type = EventType::parse("login.completed")?;
    let actor = Actor::parse("broker:bench")?;
    let version = SchemaVersion::parse(1)?;
    (0..u64::from(appenders))
        .map(|a| {
            let count =
                records / u64::from(appenders) + u64::from(a < records % u64::from(appenders));
            let stream = StreamId::parse(format!("session:bench-{run}-{a}"))?;
            (1..=count)
                .map(|k| {
                    let data = json!({
                        "transaction_id": format!("{run}-{a:04}-{k:08}"),
                        "client_id": format!("sp-bench-{:02}", a % 16),
                        "environment": "PROD",
                        "idp": "mitid",
                        "identity_type": "private",
                        "loa": "https://data.gov.dk/concept/core/nsis/loa/Substantial",
                        "amr": ["mitid.code_app"],
                        "mitid.uuid": format!("7f0c1e2d-{a:04x}-4c3b-9a8e-{k:012x}"),
                        "attempt": k,
                    });
                    Ok(NewEvent {
                        stream_seq: k,
                        event: Event {
                            stream: stream.clone(),
                            event_type: event_type.clone(),
                            version,
                            actor: actor.clone(),
                            data: Payload::parse(&data)?,
                        },
                    })
                })
                .collect()
        })
        .collect()
}

pub(crate) fn transport(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(_) => "SQLite WAL, synchronous=FULL".into(),
        DatabaseUrl::Postgres(s) => {
            let mode = s
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("sslmode="))
                .unwrap_or("prefer, sqlx's default: TLS when the server offers it");
            format!("PostgreSQL, synchronous_commit as the server sets it, sslmode={mode}")
        }
    }
}

/// Makes `bench_baseline` anew: the columns and indexes of `ledger_records`, no chain.
async fn baseline_table(db: &Db) -> anyhow::Result<()> {
    match db {
        Db::Postgres(p) => {
            p.execute(
                "DROP TABLE IF EXISTS bench_baseline; \
                 CREATE TABLE bench_baseline (LIKE ledger_records INCLUDING INDEXES)",
            )
            .await?;
        }
        Db::Sqlite(p) => {
            p.execute(
                "DROP TABLE IF EXISTS bench_baseline; \
                 CREATE TABLE bench_baseline (seq INTEGER PRIMARY KEY, stream TEXT NOT NULL, \
                 stream_seq INTEGER NOT NULL, event_type TEXT NOT NULL, time_us INTEGER NOT NULL, \
                 canonical BLOB NOT NULL, hash BLOB NOT NULL) STRICT; \
                 CREATE UNIQUE INDEX bench_baseline_stream ON bench_baseline (stream, stream_seq)",
            )
            .await?;
        }
    }
    Ok(())
}

/// Inserts `rows` into `bench_baseline`, `per_tx` rows per committed transaction, and
/// returns the seconds it took.
async fn baseline(db: &Db, rows: &[StoredRow], per_tx: usize) -> anyhow::Result<f64> {
    match db {
        Db::Postgres(p) => {
            let mut conn = p.acquire().await?;
            let started = Instant::now();
            for batch in rows.chunks(per_tx) {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO bench_baseline (seq, stream, stream_seq, event_type, time_us, canonical, hash) \
                     SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::bytea[], $7::bytea[])",
                )
                .bind(batch.iter().map(|r| r.seq).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.stream_seq).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.time_us).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.canonical.as_slice()).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.hash.as_slice()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok(started.elapsed().as_secs_f64())
        }
        Db::Sqlite(p) => {
            let mut conn = p.acquire().await?;
            let started = Instant::now();
            for batch in rows.chunks(per_tx) {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for chunk in batch.chunks(100) {
                    let mut q = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO bench_baseline (seq, stream, stream_seq, event_type, time_us, canonical, hash) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.seq)
                            .push_bind(r.stream.as_str())
                            .push_bind(r.stream_seq)
                            .push_bind(r.event_type.as_str())
                            .push_bind(r.time_us)
                            .push_bind(r.canonical.as_slice())
                            .push_bind(r.hash.as_slice());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Ok(started.elapsed().as_secs_f64())
        }
    }
}

/// `debug` or `release`: figures of a debug build say little.
pub(crate) fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Distinguishes one run's ids from another's on the same database.
pub(crate) fn run_id() -> String {
    format!("{:x}", chrono::Utc::now().timestamp_micros())
}

/// A directory of the bench's own under the system's temporary directory (0700), removed
/// with the value.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "vidne-bench-{name}-{}-{}",
            std::process::id(),
            run_id()
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("cannot make {}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
