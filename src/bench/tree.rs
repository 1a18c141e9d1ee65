//! `vidne bench tree`: what keeping the Merkle tree costs the append path (the same
//! appends with the tree and without it, alternated in one run on two fresh databases);
//! `vidne bench proofs`: inclusion and consistency proof generation at a ledger size,
//! p50 and p99, next to reading the same number of record hashes (the floor of any
//! proof: it must read at least its leaf's tile).

use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use sqlx::Executor;

use super::{bench_events, build_kind, drive, run_id, transport};
use crate::db::{self, DatabaseUrl, Db};
use crate::ledger::{Ledger, LedgerOptions, Reader};
use crate::merkle::store::DbTiles;
use crate::merkle::{proof, TILE_WIDTH};

/// `url`'s sibling database for one side of the comparison: `<file>.<name>.db` beside an
/// SQLite file, `<database>_<name>` on the same PostgreSQL server.
fn sibling(url: &DatabaseUrl, name: &str) -> anyhow::Result<DatabaseUrl> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(DatabaseUrl::Sqlite(crate::secret_file::beside(
            path,
            &format!(".{name}.db"),
        ))),
        DatabaseUrl::Postgres(s) => {
            let (base, query) = s
                .split_once('?')
                .map_or((s.as_str(), None), |(b, q)| (b, Some(q)));
            let (server, database) = base
                .rsplit_once('/')
                .filter(|(server, _)| server.contains("://") && !server.ends_with('/'))
                .ok_or_else(|| anyhow::anyhow!("--database must name a database"))?;
            let mut out = format!("{server}/{database}_{name}");
            if let Some(q) = query {
                out.push('?');
                out.push_str(q);
            }
            out.parse().map_err(|e: String| anyhow::anyhow!(e))
        }
    }
}

/// Removes a scratch database made by [`sibling`].
async fn drop_database(url: &DatabaseUrl) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    match url {
        DatabaseUrl::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(crate::secret_file::beside(path, suffix));
            }
        }
        DatabaseUrl::Postgres(s) => {
            if sqlx::Postgres::database_exists(s).await? {
                sqlx::Postgres::drop_database(s).await?;
            }
        }
    }
    Ok(())
}

/// Appends `records` from `appenders` tasks, one event per append, into `url` with the
/// tree on or off; records/s.
async fn appends_per_second(
    url: &DatabaseUrl,
    records: u64,
    appenders: u32,
    tree: bool,
) -> anyhow::Result<f64> {
    let events = bench_events(&run_id(), records, appenders)?;
    let ledger = Ledger::start(
        Db::connect(url, "vidne-writer", Ledger::CONNECTIONS).await?,
        LedgerOptions {
            tree,
            ..LedgerOptions::default()
        },
    );
    let started = Instant::now();
    drive(&ledger, events, 1).await?;
    let secs = started.elapsed().as_secs_f64();
    ledger.close().await;
    Ok(records as f64 / secs)
}

pub async fn tree_cost(
    url: &DatabaseUrl,
    records: u64,
    appenders: u32,
    rounds: u32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        records > 0 && appenders > 0 && rounds > 0,
        "--records, --appenders and --rounds must be at least 1"
    );
    let with = sibling(url, "tree_on")?;
    let without = sibling(url, "tree_off")?;
    println!(
        "vidne bench tree ({} build): {} ({}), {records} records per run, {appenders} appenders, {rounds} rounds alternating",
        build_kind(),
        url,
        transport(url)
    );
    println!("  scratch databases: {with} (tree kept) and {without} (no tree)");
    let mut ratios = Vec::new();
    for side in [&with, &without] {
        drop_database(side).await?;
        db::create_if_missing(side).await?;
        db::open(side, "vidne-bench", 1).await?.close().await;
    }
    for round in 1..=rounds {
        // Alternate which side goes first, so neither always meets a warmer server.
        let on_first = round % 2 == 1;
        let mut on = 0.0;
        let mut off = 0.0;
        for tree in if on_first {
            [true, false]
        } else {
            [false, true]
        } {
            let rate = if tree {
                appends_per_second(&with, records, appenders, true).await?
            } else {
                appends_per_second(&without, records, appenders, false).await?
            };
            if tree {
                on = rate;
            } else {
                off = rate;
            }
        }
        let ratio = on / off;
        ratios.push(ratio);
        println!(
            "  round {round}: with tree {on:>9.0} records/s   without {off:>9.0} records/s   ratio {ratio:.3}"
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median ratio with / without the tree: {:.3} (the tree costs {:.1}% of append throughput)",
        ratios[ratios.len() / 2],
        (1.0 - ratios[ratios.len() / 2]) * 100.0
    );
    drop_database(&with).await?;
    drop_database(&without).await?;
    Ok(())
}

/// Appends until the ledger holds `records`, through the real append path in batches of
/// 1000 from 4 appenders, with a line of progress every million.
async fn fill(url: &DatabaseUrl, reader: &Reader, records: u64) -> anyhow::Result<()> {
    let have = reader.head().await?.next_seq;
    if have >= records {
        return Ok(());
    }
    let ledger = Ledger::start(
        Db::connect(url, "vidne-writer", Ledger::CONNECTIONS).await?,
        LedgerOptions::default(),
    );
    let started = Instant::now();
    let mut at = have;
    while at < records {
        let step = (records - at).min(1_000_000);
        drive(&ledger, bench_events(&run_id(), step, 4)?, 1000).await?;
        at += step;
        println!(
            "  filled to {at} records ({:.0} records/s)",
            (at - have) as f64 / started.elapsed().as_secs_f64()
        );
    }
    ledger.close().await;
    Ok(())
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "  {label:<40} p50 {:>8.1} µs   p99 {:>8.1} µs   ({} samples)",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.len()
    );
}

/// A uniform random number below `n` (`n` ≥ 1).
fn below(n: u64) -> u64 {
    OsRng.next_u64() % n
}

pub async fn proofs(url: &DatabaseUrl, records: u64, samples: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        records > 1 && samples > 0,
        "--records must be at least 2 and --samples at least 1"
    );
    db::create_if_missing(url).await?;
    let pool = db::open(url, "vidne-bench", 4).await?;
    let reader = Reader::new(pool.clone());
    println!(
        "vidne bench proofs ({} build): {} ({})",
        build_kind(),
        url,
        transport(url)
    );
    fill(url, &reader, records).await?;
    let tiles = DbTiles::new(pool.clone());
    let size = tiles.size().await?;
    println!("  tree of {size} records; proofs from the stored tiles, one at a time");
    warm(&pool).await?;

    let mut floor = Vec::new();
    let mut included = Vec::new();
    let mut consistent = Vec::new();
    for _ in 0..samples {
        let seq = below(size);
        let start = seq / TILE_WIDTH * TILE_WIDTH;
        let t = Instant::now();
        std::hint::black_box(tiles.read(0, start, start + TILE_WIDTH).await?);
        floor.push(t.elapsed());

        let t = Instant::now();
        std::hint::black_box(proof::inclusion(&tiles, seq, size).await?);
        included.push(t.elapsed());

        let old = 1 + below(size - 1);
        let t = Instant::now();
        std::hint::black_box(proof::consistency(&tiles, old, size).await?);
        consistent.push(t.elapsed());
    }
    report("inclusion proof (random seq, whole tree)", included);
    report("consistency proof (random old size)", consistent);
    report("baseline: read one level-0 tile", floor);
    pool.close().await;
    Ok(())
}

/// Reads the stored tile hashes once, so the samples measure a warm database (as a
/// serving one is) rather than the first touch of each page.
async fn warm(pool: &Db) -> anyhow::Result<()> {
    match pool {
        Db::Postgres(p) => {
            p.execute("SELECT count(*) FROM merkle_hashes").await?;
        }
        Db::Sqlite(p) => {
            p.execute("SELECT count(*) FROM merkle_hashes").await?;
        }
    }
    Ok(())
}
