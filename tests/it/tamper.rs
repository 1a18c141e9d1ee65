//! Each way of tampering with stored records, done by direct SQL with the guard triggers
//! disabled, is caught by the `vidne verify` binary at the right seq.

use serde_json::Value;
use vidne::db::Db;
use vidne::ledger::StoredRow;
use vidne::spec::canonical;
use vidne::spec::hash::record_hash;

use crate::both_backends;
use crate::helpers::{fill, vidne, Backend, TestDb};

const RECORDS: u64 = 10;

/// A ledger of 10 records with its guards disabled, and its rows.
async fn tamperable(backend: Backend) -> (TestDb, Db, Vec<StoredRow>) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    fill(&ledger, RECORDS).await;
    ledger.close().await;
    db.exec(match backend {
        Backend::Postgres => {
            "ALTER TABLE ledger_records DISABLE TRIGGER USER; ALTER TABLE ledger_head DISABLE TRIGGER USER"
        }
        Backend::Sqlite => {
            "DROP TRIGGER ledger_records_no_update; DROP TRIGGER ledger_records_no_delete; \
             DROP TRIGGER ledger_head_forward; DROP TRIGGER ledger_head_kept"
        }
    })
    .await;
    let rows = reader.range(0, RECORDS, 100).await.unwrap();
    (db, reader.db().clone(), rows)
}

/// Runs SQL with `?1`-style (SQLite) or `$1`-style (PostgreSQL) parameters.
async fn exec(db: &Db, sql: &str, canonical: &[u8], hash: &[u8], seq: i64) {
    match db {
        Db::Postgres(p) => {
            let sql = sql.replace('?', "$");
            sqlx::query(&sql)
                .bind(canonical)
                .bind(hash)
                .bind(seq)
                .execute(p)
                .await
                .unwrap();
        }
        Db::Sqlite(p) => {
            sqlx::query(sql)
                .bind(canonical)
                .bind(hash)
                .bind(seq)
                .execute(p)
                .await
                .unwrap();
        }
    }
}

async fn set_row(db: &Db, seq: i64, canonical: &[u8], hash: &[u8]) {
    exec(
        db,
        "UPDATE ledger_records SET canonical = ?1, hash = ?2 WHERE seq = ?3",
        canonical,
        hash,
        seq,
    )
    .await;
}

async fn raw(db: &Db, sql: &str) {
    exec(db, &format!("{sql} -- ?1 ?2 ?3"), b"", b"", 0).await;
}

/// Inserts a record that is well formed and correctly hashed: only its place in the chain
/// can give it away.
async fn insert_forged(db: &Db, at: i64, template: &StoredRow, prev_hex: &str) {
    let mut v: Value = serde_json::from_slice(&template.canonical).unwrap();
    v["seq"] = at.into();
    v["prev"] = prev_hex.into();
    v["stream"] = "session:forged".into();
    v["stream_seq"] = 1.into();
    let bytes = canonical::to_vec(&v).unwrap();
    let hash = record_hash(&bytes);
    let sql = "INSERT INTO ledger_records (seq, stream, stream_seq, event_type, time_us, canonical, hash) \
               VALUES (?3, 'session:forged', 1, 'login.completed', 0, ?1, ?2)";
    exec(db, sql, &bytes, &hash.0, at).await;
    let time = vidne::spec::time::parse_micros(v["time"].as_str().unwrap()).unwrap();
    exec(
        db,
        &format!("UPDATE ledger_records SET time_us = {time} WHERE seq = ?3 -- ?1 ?2"),
        b"",
        b"",
        at,
    )
    .await;
}

/// `vidne verify --json` on the tampered database must fail at `seq` with a reason
/// containing `reason`.
fn assert_caught(db: &TestDb, seq: u64, reason: &str) {
    let (code, out, err) = vidne(&["verify", "--database", &db.url_string(), "--json"]);
    assert_eq!(code, 1, "verify must exit 1; stdout {out} stderr {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("not JSON: {out}"));
    assert_eq!(v["ok"], false);
    assert_eq!(v["seq"], seq, "{v}");
    let got = v["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        got.contains(reason),
        "reason {got:?} should mention {reason:?}"
    );
}

both_backends!(
    untampered_ledger_verifies,
    one_changed_byte,
    deleted_record,
    deleted_last_record,
    swapped_records,
    record_inserted_in_the_middle,
    record_appended_outside_the_writer,
    changed_prev_with_rehash,
    stored_hash_mismatch,
    non_canonical_bytes,
    index_column_disagrees,
);

async fn untampered_ledger_verifies(backend: Backend) {
    let (db, _, _) = tamperable(backend).await;
    let (code, out, err) = vidne(&["verify", "--database", &db.url_string(), "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["records"].clone()),
        (true.into(), RECORDS.into())
    );
    let (code, out, _) = vidne(&[
        "verify",
        "--database",
        &db.url_string(),
        "--from",
        "3",
        "--to",
        "6",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok: 4 records verified (seq 3..=6)"),
        "{out}"
    );
}

async fn one_changed_byte(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    let mut bytes = rows[4].canonical.clone();
    let at = bytes.windows(3).position(|w| w == b"gr\xc3").unwrap();
    bytes[at] = b'h';
    set_row(&pool, 4, &bytes, &rows[4].hash).await;
    assert_caught(&db, 4, "hash");
}

async fn deleted_record(backend: Backend) {
    let (db, pool, _) = tamperable(backend).await;
    raw(&pool, "DELETE FROM ledger_records WHERE seq = 4").await;
    assert_caught(&db, 4, "missing");
}

async fn deleted_last_record(backend: Backend) {
    let (db, pool, _) = tamperable(backend).await;
    raw(&pool, "DELETE FROM ledger_records WHERE seq = 9").await;
    assert_caught(&db, 9, "missing");
}

async fn swapped_records(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    set_row(&pool, 3, &rows[6].canonical, &rows[6].hash).await;
    set_row(&pool, 6, &rows[3].canonical, &rows[3].hash).await;
    assert_caught(&db, 3, "seq");
}

async fn record_inserted_in_the_middle(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    raw(
        &pool,
        "UPDATE ledger_records SET seq = seq + 1000 WHERE seq >= 5",
    )
    .await;
    raw(
        &pool,
        "UPDATE ledger_records SET seq = seq - 999 WHERE seq >= 1000",
    )
    .await;
    insert_forged(&pool, 5, &rows[5], &rows[4].hash32().unwrap().to_hex()).await;
    // The forged record links to record 4 and hashes correctly; the one after it does not fit.
    assert_caught(&db, 6, "seq");
}

async fn record_appended_outside_the_writer(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    insert_forged(&pool, 10, &rows[9], &rows[9].hash32().unwrap().to_hex()).await;
    assert_caught(&db, 10, "head");
}

async fn changed_prev_with_rehash(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    let mut v: Value = serde_json::from_slice(&rows[5].canonical).unwrap();
    v["prev"] = record_hash(b"elsewhere").to_hex().into();
    let bytes = canonical::to_vec(&v).unwrap();
    set_row(&pool, 5, &bytes, &record_hash(&bytes).0).await;
    assert_caught(&db, 5, "prev");
}

async fn stored_hash_mismatch(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    set_row(&pool, 5, &rows[5].canonical, &record_hash(b"other").0).await;
    assert_caught(&db, 5, "hash");
}

async fn non_canonical_bytes(backend: Backend) {
    let (db, pool, rows) = tamperable(backend).await;
    let v: Value = serde_json::from_slice(&rows[5].canonical).unwrap();
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    set_row(&pool, 5, &bytes, &record_hash(&bytes).0).await;
    assert_caught(&db, 5, "canonical");
}

async fn index_column_disagrees(backend: Backend) {
    let (db, pool, _) = tamperable(backend).await;
    raw(
        &pool,
        "UPDATE ledger_records SET stream = 'session:other' WHERE seq = 5",
    )
    .await;
    assert_caught(&db, 5, "stream");
}
