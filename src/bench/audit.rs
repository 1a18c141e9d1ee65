//! `vidne bench audit`: auditors' filtered queries over a ledger of N broker-shaped
//! records, p50 and p99 per filter mix, next to the baseline of the same run: reading one
//! record by `seq`, the cheapest query the database answers.
//!
//! The ledger is filled (if it holds fewer than N records) through the real append path
//! with sessions as the broker records them: a transaction started and a login for one of
//! 200 SP clients, each client on one IdP; 1,000,000 people; a CPR match in a third of
//! the MitID sessions, a flow error in a tenth; completion and logout. The audit index
//! then catches up (its rate is printed), then the compliance reports (a checkpoint is
//! signed at the head for them; their rate is printed), and each mix is asked S times
//! with parameters drawn from the stored records, through [`AuditLog::search`], as the
//! route asks it (a page of 100, time bounds found by binary search, the index's
//! position read).

use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use serde_json::json;
use sha2::Digest as _;

use super::tree::percentile;
use super::{build_kind, drive, transport};
use crate::audit::{AuditLog, Search};
use crate::checkpoint::{Checkpointer, LogKey};
use crate::db::{self, DatabaseUrl, Db};
use crate::domain::audit::AuditFilter;
use crate::domain::values::Pepper;
use crate::ledger::{Ledger, LedgerOptions, NewEvent, Reader};
use crate::projection::{AuditIndex, Reports};
use crate::record::{Actor, Event, EventType, Payload, SchemaVersion, StreamId};

const CLIENTS: u64 = 200;
const PEOPLE: u64 = 1_000_000;
const IDPS: [&str; 8] = [
    "mitid",
    "mitid_erhverv",
    "nemid",
    "bankid_no",
    "bankid_mobile_no",
    "buypass_no",
    "bankid_se",
    "ftn",
];

fn below(n: u64) -> u64 {
    OsRng.next_u64() % n.max(1)
}

fn client(c: u64) -> String {
    format!("sp-bench-{c:03}")
}

/// One session's records, as the broker appends them.
fn session(run: &str, s: u64) -> anyhow::Result<Vec<NewEvent>> {
    let person = s.wrapping_mul(0x9E37_79B9_7F4A_7C15) % PEOPLE;
    let idp = IDPS[(person % 8) as usize];
    // The clients of an IdP are those with the same number modulo 8.
    let c = person % 8 + 8 * (s % (CLIENTS / 8));
    let (client, tx) = (client(c), format!("t{s}-{run}"));
    let stream = StreamId::parse(format!("session:b{s}-{run}"))?;
    let at = "2026-11-22T10:00:00.000000Z";
    let mut events = vec![
        (
            "session.transaction_started",
            json!({"transaction_id": tx, "client_id": client, "environment": "PROD",
                   "idp": idp, "signed_request": false, "at": at}),
        ),
        (
            "session.login_completed",
            json!({"transaction_id": tx, "client_id": client, "environment": "PROD",
                   "idp": idp, "identity_type": "private",
                   "loa": "https://data.gov.dk/concept/core/nsis/Substantial",
                   "amr": ["code_app"], "subject": {"uuid": format!("person-{person}")},
                   "subject_key": format!("{idp}:person-{person}"), "at": at}),
        ),
    ];
    if idp == "mitid" && s % 3 == 0 {
        let cpr_ref = hex::encode(sha2::Sha256::digest(format!("cpr-{person}").as_bytes()));
        events.push((
            "session.cpr_match_completed",
            json!({"transaction_id": tx, "cpr_ref": cpr_ref, "matched": true,
                   "attempt": 1, "at": at}),
        ));
    }
    if s % 10 == 0 {
        events.push((
            "session.flow_failed",
            json!({"transaction_id": tx, "idp": idp, "error": "access_denied",
                   "error_description": "user_cancelled", "at": at}),
        ));
    }
    events.push((
        "session.transaction_completed",
        json!({"transaction_id": tx, "client_id": client, "at": at}),
    ));
    events.push((
        "session.logged_out",
        json!({"channel": "back_channel", "at": at}),
    ));
    let actor = Actor::parse("broker:bench")?;
    events
        .into_iter()
        .zip(1..)
        .map(|((ty, data), k)| {
            Ok(NewEvent {
                stream_seq: k,
                event: Event {
                    stream: stream.clone(),
                    event_type: EventType::parse(ty)?,
                    version: SchemaVersion::parse(1)?,
                    actor: actor.clone(),
                    data: Payload::parse(&data)?,
                },
            })
        })
        .collect()
}

/// Appends sessions until the ledger holds at least `records` records.
async fn fill(url: &DatabaseUrl, reader: &Reader, records: u64) -> anyhow::Result<()> {
    let have = reader.head().await?.next_seq;
    if have >= records {
        println!("  ledger holds {have} records already");
        return Ok(());
    }
    let ledger = Ledger::start(
        Db::connect(url, "vidne-writer", Ledger::CONNECTIONS).await?,
        LedgerOptions::default(),
    );
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let started = Instant::now();
    let (mut at, mut s) = (have, 0u64);
    while at < records {
        // Four appenders, each a list of whole sessions, some 500,000 records a step.
        let mut lanes: Vec<Vec<NewEvent>> = vec![Vec::new(); 4];
        let mut step = 0;
        while step < 500_000 && at + step < records {
            let events = session(&run, s)?;
            step += events.len() as u64;
            lanes[(s % 4) as usize].extend(events);
            s += 1;
        }
        drive(&ledger, lanes, 1000).await?;
        at += step;
        println!(
            "  filled to {at} records ({:.0} records/s)",
            (at - have) as f64 / started.elapsed().as_secs_f64()
        );
    }
    ledger.close().await;
    Ok(())
}

/// A stored record's attribution, to draw parameters from.
struct Drawn {
    seq: u64,
    stream: String,
    time_us: i64,
    transaction_id: Option<String>,
    subject_key: Option<String>,
    cpr_ref: Option<String>,
}

async fn draw(db: &Db, below_seq: u64, need_cpr: bool) -> anyhow::Result<Drawn> {
    let sql = "SELECT r.seq, r.stream, r.time_us, a.transaction_id, a.subject_key, a.cpr_ref \
               FROM audit_index a JOIN ledger_records r ON r.seq = a.seq WHERE a.seq = $1";
    loop {
        let seq = i64::try_from(below(below_seq))?;
        type Row = (
            i64,
            String,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Row = crate::on_pool!(db, p => sqlx::query_as(sql).bind(seq).fetch_one(p).await?);
        let d = Drawn {
            seq: row.0.max(0) as u64,
            stream: row.1,
            time_us: row.2,
            transaction_id: row.3,
            subject_key: row.4,
            cpr_ref: row.5,
        };
        if d.subject_key.is_some()
            && d.transaction_id.is_some()
            && (!need_cpr || d.cpr_ref.is_some())
        {
            return Ok(d);
        }
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The parameters of one query of mix `mix`, and a cursor.
fn params(mix: &str, d: &Drawn, size: u64) -> (Vec<(&'static str, String)>, Option<u64>) {
    let c = below(CLIENTS);
    let minute = || {
        vec![
            ("from_time", rfc3339(d.time_us - 30_000_000)),
            ("to_time", rfc3339(d.time_us + 30_000_000)),
        ]
    };
    let mut p: Vec<(&'static str, String)> = Vec::new();
    let mut cursor = None;
    match mix {
        "client_id" => p.push(("client_id", client(c))),
        "client_id, deep page" => {
            p.push(("client_id", client(c)));
            cursor = Some(below(size));
        }
        "3 client_ids, deep page" => {
            let three = [c, (c + 1) % CLIENTS, (c + 2) % CLIENTS].map(client);
            p.push(("client_id", three.join(",")));
            cursor = Some(below(size));
        }
        "client_id + type" => {
            p.push(("client_id", client(c)));
            p.push(("type", "session.flow_failed".into()));
        }
        "client_id + idp (matches nothing)" => {
            p.push(("client_id", client(c)));
            p.push(("idp", IDPS[((c + 1) % 8) as usize].into()));
        }
        "type + idp (matches nothing)" => {
            // CPR matches are MitID's alone.
            p.push(("type", "session.cpr_match_completed".into()));
            p.push(("idp", IDPS[1 + (c % 7) as usize].into()));
        }
        "client_id + type + idp" => {
            p.push(("client_id", client(c)));
            p.push(("type", "session.login_completed".into()));
            p.push(("idp", IDPS[(c % 8) as usize].into()));
        }
        "client_id + 1 minute" => {
            p.push(("client_id", client(c)));
            p.extend(minute());
        }
        "idp + 1 minute" => {
            p.push(("idp", IDPS[(c % 8) as usize].into()));
            p.extend(minute());
        }
        "transaction_id" => p.push((
            "transaction_id",
            d.transaction_id.clone().unwrap_or_default(),
        )),
        "subject" => p.push(("subject", d.subject_key.clone().unwrap_or_default())),
        "cpr_ref" => p.push(("cpr_ref", d.cpr_ref.clone().unwrap_or_default())),
        "stream" => p.push(("stream", d.stream.clone())),
        "type + 100,000 seqs" => {
            p.push(("type", "session.cpr_match_completed".into()));
            p.push(("from_seq", d.seq.to_string()));
            p.push(("to_seq", (d.seq + 100_000).to_string()));
        }
        _ => {}
    }
    (p, cursor)
}

const MIXES: &[&str] = &[
    "client_id",
    "client_id, deep page",
    "3 client_ids, deep page",
    "client_id + type",
    "client_id + idp (matches nothing)",
    "type + idp (matches nothing)",
    "client_id + type + idp",
    "client_id + 1 minute",
    "idp + 1 minute",
    "transaction_id",
    "subject",
    "cpr_ref",
    "stream",
    "type + 100,000 seqs",
];

/// Runs a projection's `catch_up` from position `from`, and prints its rate.
async fn timed(
    what: &str,
    done: &str,
    from: u64,
    catch_up: impl std::future::Future<Output = anyhow::Result<u64>>,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let to = catch_up.await?;
    let secs = started.elapsed().as_secs_f64();
    if to > from {
        let n = to - from;
        let rate = n as f64 / secs;
        println!("  {what}: {n} records {done} in {secs:.1} s ({rate:.0} records/s)");
    }
    Ok(to)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn audit(url: &DatabaseUrl, records: u64, samples: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        records > 0 && samples > 0,
        "--records and --samples must be at least 1"
    );
    db::create_if_missing(url).await?;
    let pool = db::open(url, "vidne-bench", 4).await?;
    let reader = Reader::new(pool.clone());
    println!(
        "vidne bench audit ({} build): {url} ({}), {records} records, {samples} samples per mix",
        build_kind(),
        transport(url)
    );
    fill(url, &reader, records).await?;

    let index_db = Db::connect(url, "vidne-audit-index", 1).await?;
    let index = AuditIndex::new(index_db.clone(), reader.clone());
    let from = index.position().await?;
    let size = timed("audit index", "indexed", from, index.catch_up()).await?;
    println!("  audit index covers {size} records; each query asks for a page of 100");

    // The compliance reports count up to signed checkpoints: one is signed at the head.
    // The bench's own key, the same every run (a ledger's checkpoints must all verify
    // with one key); not a secret.
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x5b; 32]);
    let key = LogKey::new("vidne.bench/audit", key).map_err(anyhow::Error::msg)?;
    let checkpoints = Checkpointer::open(pool.clone(), key).await?;
    checkpoints.sign_head().await?;
    let reports = Reports::new(index_db.clone(), reader.clone(), index.clone());
    let from = reports.position().await?;
    timed("compliance reports", "counted", from, reports.catch_up()).await?;
    let log = AuditLog::new(pool.clone(), index);
    let pepper = Pepper::new(b"vidne bench audit pepper, not a secret".to_vec())?;

    // The baseline: one record by its primary key.
    let mut floor = Vec::with_capacity(samples as usize);
    for _ in 0..samples {
        let seq = below(size);
        let t = Instant::now();
        std::hint::black_box(reader.range(seq, seq, 1).await?);
        floor.push(t.elapsed());
    }
    floor.sort();
    let base_p99 = percentile(&floor, 0.99);
    println!(
        "  {:<36} p50 {:>7.2} ms   p99 {:>7.2} ms   (baseline)",
        "one record by seq",
        ms(percentile(&floor, 0.5)),
        ms(base_p99)
    );
    let mut worst = Duration::ZERO;
    for mix in MIXES {
        let mut times = Vec::with_capacity(samples as usize);
        let mut hits = 0usize;
        for _ in 0..samples {
            let drawn = draw(&pool, size, *mix == "cpr_ref").await?;
            let (p, cursor) = params(mix, &drawn, size);
            let filter = AuditFilter::from_params(
                |k| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
                &pepper,
            )?;
            let t = Instant::now();
            let page = log
                .search(&Search {
                    filter: &filter,
                    client: None,
                    cursor,
                    limit: 100,
                })
                .await?;
            times.push(t.elapsed());
            hits += page.hits.len();
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        worst = worst.max(p99);
        println!(
            "  {mix:<36} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   {:>5.1} hits/query   p99 {:>6.1}x baseline",
            ms(percentile(&times, 0.5)),
            ms(p99),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
            hits as f64 / f64::from(samples),
            p99.as_secs_f64() / base_p99.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "  worst p99 {:.2} ms (target: under 100 ms at 10,000,000 records)",
        ms(worst)
    );
    index_db.close().await;
    pool.close().await;
    Ok(())
}
